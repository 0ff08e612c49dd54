#!/usr/bin/env bash
# Cross-builds the `rill` binary for ARM boards (and the static x86_64 musl binary of the
# container image) and prints how long each build took.
#
#   scripts/cross-build.sh [--profile edge|ci-cross|dev] [--features edge|full] [--target TRIPLE]... [--no-install]
#
# Targets: aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf (both when no --target is
# given), and x86_64-unknown-linux-musl: the static binary of the container image
# (deploy/Containerfile; Debian's musl-tools compiles the C parts with musl-gcc, rustc links
# statically with its own musl start files; the script checks that the result has no
# interpreter and no shared library).
#
# Profiles (workspace Cargo.toml): `ci-cross` (default; release without LTO, what CI's qemu smoke
# test runs), `edge` (LTO, one codegen unit, opt-level "s", stripped: the shipped binary and the
# size budget), and `dev` (cargo's debug build, written to .../<triple>/debug/:
# what CI builds the static musl binary of the container test with, the cheapest full build).
# Writes `${CARGO_TARGET_DIR:-target}/<triple>/<profile>/rill`.
#
# Feature sets of rill-gateway (docs/architecture.md, "Build features"): `edge`
# (`--no-default-features --features edge`: no cluster mode, no web console; what boards run)
# is the default of the `edge` and `ci-cross` profiles, so the qemu smoke test runs the
# binary a board gets; `full` (cargo's default features) is the default of `dev` (the
# container test's musl build). `--features` overrides: e.g. `--profile edge --features full
# --target x86_64-unknown-linux-musl` is the container image's binary. A different feature set
# rebuilds the gateway crate (cargo keeps one build per feature set of a target directory).
#
# Installs what is missing by itself: the Rust standard library of the target (`rustup target
# add`) and, as root with apt-get, Debian's cross C toolchain (gcc-aarch64-linux-gnu +
# libc6-dev-arm64-cross, gcc-arm-linux-gnueabihf + libc6-dev-armhf-cross, musl-tools), which
# links the binary and compiles the C parts (ring, zstd-sys, lz4-sys). `--no-install` only checks and fails.
# Linker and C compiler are passed as environment variables of this build only, so native builds
# are untouched (no .cargo/config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=ci-cross
features=
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
    --features)
        features=${2:?--features needs a value}
        shift 2
        ;;
    --features=*)
        features=${1#--features=}
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
edge | ci-cross | dev) ;;
*)
    echo "cross-build: --profile must be edge, ci-cross or dev, not $profile" >&2
    exit 2
    ;;
esac
if [ -z "$features" ]; then
    case "$profile" in
    edge | ci-cross) features=edge ;;
    dev) features=full ;;
    esac
fi
case "$features" in
edge) feature_args=(--no-default-features --features edge) ;;
full) feature_args=() ;;
*)
    echo "cross-build: --features must be edge or full, not $features" >&2
    exit 2
    ;;
esac
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

# The C compiler, archiver and linker of a target (no linker: rustc's default), a header the
# target's C library must have, and the Debian packages that provide them.
target_cc() {
    case "$1" in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu-gcc ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf-gcc ;;
    x86_64-unknown-linux-musl) echo musl-gcc ;;
    *) return 1 ;;
    esac
}
target_ar() {
    case "$1" in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu-ar ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf-ar ;;
    x86_64-unknown-linux-musl) echo ar ;;
    esac
}
target_linker() {
    case "$1" in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu-gcc ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf-gcc ;;
    x86_64-unknown-linux-musl) echo "" ;; # static, self-contained: rustc's own musl crt
    esac
}
target_header() {
    case "$1" in
    aarch64-unknown-linux-gnu) echo /usr/aarch64-linux-gnu/include/stdio.h ;;
    armv7-unknown-linux-gnueabihf) echo /usr/arm-linux-gnueabihf/include/stdio.h ;;
    x86_64-unknown-linux-musl) echo /usr/include/x86_64-linux-musl/stdio.h ;;
    esac
}
debian_packages() {
    case "$1" in
    aarch64-unknown-linux-gnu) echo gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;;
    armv7-unknown-linux-gnueabihf) echo gcc-arm-linux-gnueabihf libc6-dev-armhf-cross ;;
    x86_64-unknown-linux-musl) echo musl-tools ;;
    esac
}

for t in "${targets[@]}"; do
    target_cc "$t" >/dev/null || {
        echo "cross-build: unsupported target $t (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf, x86_64-unknown-linux-musl)" >&2
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
    if ! command -v "$(target_cc "$t")" >/dev/null 2>&1 || [ ! -e "$(target_header "$t")" ]; then
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
    env_triple=$(tr 'a-z-' 'A-Z_' <<<"$t")
    cc_triple=${t//-/_}
    vars=("CC_${cc_triple}=$(target_cc "$t")" "AR_${cc_triple}=$(target_ar "$t")")
    linker=$(target_linker "$t")
    [ -z "$linker" ] || vars+=("CARGO_TARGET_${env_triple}_LINKER=$linker")
    start=$(date +%s)
    echo "cross-build: cargo build --profile $profile --target $t ${feature_args[*]} (feature set $features)"
    env "${vars[@]}" cargo build -p rill-gateway --bin rill --profile "$profile" --target "$t" \
        "${feature_args[@]}"
    secs=$(($(date +%s) - start))
    bin=$target_dir/$t/$([ "$profile" = dev ] && echo debug || echo "$profile")/rill
    [ -x "$bin" ] || {
        echo "cross-build: cargo succeeded but $bin is missing" >&2
        exit 1
    }
    if [ "$t" = x86_64-unknown-linux-musl ]; then
        # The container image has no libraries and no loader: the binary must be static.
        if LC_ALL=C readelf -l "$bin" | grep -q 'Requesting program interpreter' ||
            LC_ALL=C readelf -d "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
            echo "cross-build: $bin is not static (readelf shows an interpreter or NEEDED libraries)" >&2
            exit 1
        fi
    fi
    size=$(stat -c %s "$bin")
    echo "cross-build: $t $profile ($features): ${secs} s, $bin ($size bytes)"
done
echo "cross-build: total $(($(date +%s) - total_start)) s for ${targets[*]} ($profile, $features)"
