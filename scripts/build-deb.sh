#!/usr/bin/env bash
# Builds the `rill` Debian package from a staged tree with `dpkg-deb --build` (no cargo-deb: see
# deploy/README.md, "Installing the .deb") and prints its path and how long it took.
#
#   scripts/build-deb.sh [--binary PATH] [--out DIR] [--fast]
#
# --binary: the `rill` executable to package (default target/edge/rill, the native `edge`
#   profile: `cargo build -p rill-gateway --bin rill --profile edge`; a cross-built one such as
#   target/aarch64-unknown-linux-gnu/edge/rill works too). The package architecture (amd64,
#   arm64, armhf) is read from the binary's ELF header, and Depends from the libraries it links
#   (none for the static musl binary). CI packages target/debug/rill (tests/tests/deb_package.rs):
#   the same package, only the binary is the unoptimized one already built for the tests.
# --out: where the .deb goes (default target/deb); the file is rill_<version>_<arch>.deb.
# --fast: gzip level 1 instead of 9 (the test's package of the 110 MB debug binary).
#
# The package installs /usr/bin/rill, the units /lib/systemd/system/rill-{edge,central}.service
# (deploy/systemd/), the example configurations /etc/rill/{edge,central}.toml (conffiles) and
# /usr/share/doc/rill/; its maintainer scripts are deploy/debian/{postinst,prerm,postrm}
# (postinst creates user and group `rill`, /var/lib/rill 0750 and /etc/rill/master.key 0600 if
# absent; purge removes them again).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/edge/rill
out=target/deb
level=9
while [ $# -gt 0 ]; do
    case "$1" in
    --binary)
        binary=${2:?--binary needs a value}
        shift 2
        ;;
    --binary=*)
        binary=${1#--binary=}
        shift
        ;;
    --out)
        out=${2:?--out needs a value}
        shift 2
        ;;
    --out=*)
        out=${1#--out=}
        shift
        ;;
    --fast)
        level=1
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "build-deb: unknown argument $1 (try --help)" >&2
        exit 2
        ;;
    esac
done
for tool in dpkg-deb readelf md5sum; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-deb: $tool is missing (Debian packages dpkg, binutils, coreutils)" >&2
        exit 1
    }
done
[ -x "$binary" ] || {
    echo "build-deb: $binary is not an executable (build it first; see --help)" >&2
    exit 1
}
start=$(date +%s)

# Version: the workspace's ([workspace.package] version in Cargo.toml).
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$version" ] || {
    echo "build-deb: no [workspace.package] version in Cargo.toml" >&2
    exit 1
}

# Architecture from the ELF header (Machine), so a package can never claim the wrong one.
machine=$(LC_ALL=C readelf -h "$binary" | sed -n 's/^ *Machine: *//p')
case "$machine" in
*X86-64*) arch=amd64 ;;
*AArch64*) arch=arm64 ;;
*ARM*) arch=armhf ;;
*)
    echo "build-deb: unsupported ELF machine '$machine' of $binary" >&2
    exit 1
    ;;
esac

# Depends: the shared libraries the binary links (the glibc builds are made on Debian 12, glibc
# 2.36; see deploy/README.md), and adduser for postinst.
depends=adduser
needed=$(LC_ALL=C readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
for lib in $needed; do
    case "$lib" in
    libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | libutil.so.1 | ld-linux*)
        dep="libc6 (>= 2.36)"
        ;;
    libgcc_s.so.1) dep=libgcc-s1 ;;
    *)
        echo "build-deb: $binary links $lib, which has no Debian dependency mapped here" >&2
        exit 1
        ;;
    esac
    case ", $depends, " in
    *", $dep, "*) ;;
    *) depends="$depends, $dep" ;;
    esac
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/rill-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/rill" \
    "$root/usr/share/doc/rill/examples"
install -m 0755 "$binary" "$root/usr/bin/rill"
install -m 0644 deploy/systemd/rill-edge.service deploy/systemd/rill-central.service \
    "$root/lib/systemd/system/"
install -m 0644 deploy/edge.toml deploy/central.toml "$root/etc/rill/"
install -m 0644 deploy/edge.toml deploy/central.toml "$root/usr/share/doc/rill/examples/"
install -m 0644 deploy/README.md "$root/usr/share/doc/rill/README.md"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: rill"
    echo
    echo "Files: *"
    echo "License: Apache-2.0"
    echo " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0."
} >"$root/usr/share/doc/rill/copyright"
chmod 0644 "$root/usr/share/doc/rill/copyright"

# Maintainer scripts: deploy/debian/, without the #DEBHELPER# placeholder (no debhelper here).
for s in postinst prerm postrm; do
    sed '/^#DEBHELPER#$/d' "deploy/debian/$s" >"$root/DEBIAN/$s"
    chmod 0755 "$root/DEBIAN/$s"
done
printf '/etc/rill/edge.toml\n/etc/rill/central.toml\n' >"$root/DEBIAN/conffiles"
installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: rill
Version: $version
Architecture: $arch
Maintainer: Rill developers <rill@localhost>
Installed-Size: $installed_kib
Depends: $depends
Section: net
Priority: optional
Description: Kafka and MQTT gateway for edge devices
 Rill is one binary that speaks the Kafka protocol and MQTT, keeps an encrypted,
 bounded log on local flash and mirrors it to a central Kafka-compatible cluster.
 This package installs the binary, systemd units for an edge and a central node
 (rill-edge.service, rill-central.service; not enabled), example configurations
 in /etc/rill and creates the user rill, /var/lib/rill and /etc/rill/master.key.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/rill_${version}_${arch}.deb
# Files belong to root whoever builds; gzip is the fastest compressor dpkg reads everywhere.
dpkg-deb --root-owner-group -Zgzip "-z$level" --build "$root" "$deb" >/dev/null
echo "build-deb: $deb ($(stat -c %s "$deb") bytes, $arch, Depends: $depends) in $(($(date +%s) - start)) s"
