#!/usr/bin/env bash
# Builds the container image of deploy/Containerfile (FROM scratch + the static binary) with
# buildah and writes it as an OCI archive; prints its path and how long it took.
#
#   scripts/build-container.sh [--binary PATH] [--out FILE] [--tag NAME]
#
# --binary: a static `rill` (default target/x86_64-unknown-linux-musl/edge/rill, from
#   `scripts/cross-build.sh --profile edge --target x86_64-unknown-linux-musl`); refused if it
#   has an ELF interpreter or needs shared libraries. Its ELF machine gives the image's
#   architecture (TARGETARCH amd64, arm64 or arm).
# --out: the OCI archive (default target/container/rill-<arch>.oci.tar); load it elsewhere with
#   `podman load -i FILE` or `skopeo copy oci-archive:FILE ...`.
# --tag: the image name inside the archive (default localhost/rill:<version>).
#
# buildah runs with `--isolation chroot --storage-driver vfs` and a storage of its own in a
# temporary directory (removed afterwards), so nothing is left in /var/lib/containers; as root,
# apt-get installs buildah when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/x86_64-unknown-linux-musl/edge/rill
out=
tag=
while [ $# -gt 0 ]; do
    case "$1" in
    --binary)
        binary=${2:?--binary needs a value}
        shift 2
        ;;
    --out)
        out=${2:?--out needs a value}
        shift 2
        ;;
    --tag)
        tag=${2:?--tag needs a value}
        shift 2
        ;;
    -h | --help)
        sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "build-container: unknown argument $1 (try --help)" >&2
        exit 2
        ;;
    esac
done

if ! command -v buildah >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build-container: apt-get install buildah"
        timeout 300 apt-get install -y -qq --no-install-recommends buildah >/dev/null 2>&1 ||
            (timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq --no-install-recommends buildah >/dev/null)
    else
        echo "build-container: buildah is missing (Debian package buildah)" >&2
        exit 1
    fi
fi
[ -x "$binary" ] || {
    echo "build-container: $binary is not an executable (see --help)" >&2
    exit 1
}
if LC_ALL=C readelf -l "$binary" | grep -q 'Requesting program interpreter' ||
    LC_ALL=C readelf -d "$binary" 2>/dev/null | grep -q '(NEEDED)'; then
    echo "build-container: $binary is not static; a FROM scratch image has no loader or libraries" >&2
    exit 1
fi
machine=$(LC_ALL=C readelf -h "$binary" | sed -n 's/^ *Machine: *//p')
case "$machine" in
*X86-64*) arch=amd64 ;;
*AArch64*) arch=arm64 ;;
*ARM*) arch=arm ;;
*)
    echo "build-container: unsupported ELF machine '$machine'" >&2
    exit 1
    ;;
esac
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
out=${out:-target/container/rill-$arch.oci.tar}
tag=${tag:-localhost/rill:$version}
start=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/rill-container.XXXXXX")
trap 'rm -rf "$work"' EXIT
ctx=$work/context
# The context: the binary, var/lib/ (root-owned parents) and var-lib-rill/ (the volume).
mkdir -p "$ctx/var/lib" "$ctx/var-lib-rill"
chmod 0755 "$ctx/var" "$ctx/var/lib"
chmod 0750 "$ctx/var-lib-rill"
install -m 0755 "$binary" "$ctx/rill-$arch"
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
buildah "${storage[@]}" bud --quiet --isolation chroot --arch "$arch" --build-arg "TARGETARCH=$arch" \
    -f deploy/Containerfile -t "$tag" "$ctx" >/dev/null
mkdir -p "$(dirname "$out")"
rm -f "$out"
buildah "${storage[@]}" push --quiet "$tag" "oci-archive:$out:$tag" >/dev/null
# vfs layers of the temporary storage are removed with $work.
buildah "${storage[@]}" rmi --all >/dev/null 2>&1 || true
echo "build-container: $out ($tag, $arch, $(stat -c %s "$out") bytes) in $(($(date +%s) - start)) s"
