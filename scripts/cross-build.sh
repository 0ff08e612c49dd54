#!/usr/bin/env bash
# Cross-builds the `rill` binary for ARM boards and prints how long each build took.
#
#   scripts/cross-build.sh [--profile edge|ci-cross] [--target TRIPLE]... [--no-install]
#
# Targets: aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf (both when no --target is
# given). Profiles (workspace Cargo.toml): `ci-cross` (default; release without LTO, what CI's
# qemu smoke test runs) and `edge` (LTO, one codegen unit, opt-level "s", stripped: the shipped
# binary and the size budget). Writes `${CARGO_TARGET_DIR:-target}/<triple>/<profile>/rill`.
#
# Installs what is missing by itself: the Rust standard library of the target (`rustup target
# add`) and, as root with apt-get, Debian's cross C toolchain (gcc-aarch64-linux-gnu +
# libc6-dev-arm64-cross, gcc-arm-linux-gnueabihf + libc6-dev-armhf-cross), which links the binary
# and compiles the C parts (ring, zstd-sys, lz4-sys). `--no-install` only checks and fails.
# Linker and C compiler are passed as environment variables of this build only, so native builds
# are untouched (no .cargo/config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=ci-cross
targets=()
install=1
while [ $# -gt 0 ]; do
    case "$1" in
    --profile)
        profile=${2:?--profile needs a value}
        shift 2
        ;;
    --profile=*)
        profile=${1#--profile=}
        shift
        ;;
    --target)
        targets+=("${2:?--target needs a value}")
        shift 2
        ;;
    --target=*)
        targets+=("${1#--target=}")
        shift
        ;;
    --no-install)
        install=0
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "cross-build: unknown argument $1 (try --help)" >&2
        exit 2
        ;;
    esac
done
case "$profile" in
edge | ci-cross) ;;
*)
    echo "cross-build: --profile must be edge or ci-cross, not $profile" >&2
    exit 2
    ;;
esac
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

# The GNU toolchain prefix of a target and the Debian packages that provide it.
gnu_prefix() {
    case "$1" in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
    *) return 1 ;;
    esac
}
debian_packages() {
    case "$1" in
    aarch64-unknown-linux-gnu) echo gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;;
    armv7-unknown-linux-gnueabihf) echo gcc-arm-linux-gnueabihf libc6-dev-armhf-cross ;;
    esac
}

for t in "${targets[@]}"; do
    gnu_prefix "$t" >/dev/null || {
        echo "cross-build: unsupported target $t (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf)" >&2
        exit 2
    }
done

# 1. Rust standard libraries.
installed=$(rustup target list --installed)
missing_std=()
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || missing_std+=("$t")
done
if [ ${#missing_std[@]} -gt 0 ]; then
    [ "$install" = 1 ] || {
        echo "cross-build: missing Rust targets: ${missing_std[*]} (rustup target add ...)" >&2
        exit 1
    }
    echo "cross-build: rustup target add ${missing_std[*]}"
    rustup target add "${missing_std[@]}"
fi

# 2. Cross C toolchains (linker, C compiler, target libc).
missing_pkgs=()
for t in "${targets[@]}"; do
    p=$(gnu_prefix "$t")
    sysroot=/usr/$p
    if ! command -v "$p-gcc" >/dev/null 2>&1 || [ ! -e "$sysroot/include/stdio.h" ]; then
        read -r -a pkgs <<<"$(debian_packages "$t")"
        missing_pkgs+=("${pkgs[@]}")
    fi
done
if [ ${#missing_pkgs[@]} -gt 0 ]; then
    if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "cross-build: apt-get install ${missing_pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing_pkgs[@]}" >/dev/null
    else
        echo "cross-build: missing cross toolchain; install the Debian packages ${missing_pkgs[*]} (as root: apt-get install ...)" >&2
        exit 1
    fi
fi

# 3. Build.
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
total_start=$(date +%s)
for t in "${targets[@]}"; do
    p=$(gnu_prefix "$t")
    env_triple=$(tr 'a-z-' 'A-Z_' <<<"$t")
    cc_triple=${t//-/_}
    start=$(date +%s)
    echo "cross-build: cargo build --profile $profile --target $t"
    env "CARGO_TARGET_${env_triple}_LINKER=$p-gcc" \
        "CC_${cc_triple}=$p-gcc" \
        "AR_${cc_triple}=$p-ar" \
        cargo build --locked -p rill-gateway --bin rill --profile "$profile" --target "$t"
    secs=$(($(date +%s) - start))
    bin=$target_dir/$t/$profile/rill
    [ -x "$bin" ] || {
        echo "cross-build: cargo succeeded but $bin is missing" >&2
        exit 1
    }
    size=$(stat -c %s "$bin")
    echo "cross-build: $t $profile: ${secs} s, $bin ($size bytes)"
done
echo "cross-build: total $(($(date +%s) - total_start)) s for ${targets[*]} ($profile)"
