#!/usr/bin/env bash
# Builds the stx-patch packages, a .deb (dpkg-deb) and an .rpm (rpmbuild), from the
# multi-call binary: /usr/lib/stx-patch/stx-patch with a link per tool in /usr/bin, the man
# pages and shell completions it generates, the systemd units, the sysusers entry, the
# default /etc/stx-patch configuration and the /var/lib/stx-patch state directory.
#
#   scripts/package.sh [--binary PATH] [--out DIR] [--fast]
#
# Without --binary it builds the release binary first. --fast compresses lightly (tests).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out="target/packages"
fast=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2;;
        --out) out="$2"; shift 2;;
        --fast) fast=1; shift;;
        *) echo "usage: $0 [--binary PATH] [--out DIR] [--fast]" >&2; exit 2;;
    esac
done
for tool in dpkg-deb rpmbuild gzip; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed (apt-get install dpkg rpm gzip)" >&2; exit 1; }
done
if [ -z "$binary" ]; then
    cargo build --locked --release -p cli --bin cli
    binary="target/release/cli"
fi
[ -x "$binary" ] || { echo "error: $binary is not an executable" >&2; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
arch_deb=$(dpkg --print-architecture)
arch_rpm=$(uname -m)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage="$work/stage"

# The tree both packages install.
install -D -m 0755 "$binary" "$stage/usr/lib/stx-patch/stx-patch"
mkdir -p "$stage/usr/bin"
tools=$("$binary" list-tools)
for tool in $tools; do
    ln -s ../lib/stx-patch/stx-patch "$stage/usr/bin/$tool"
done
"$binary" generate-docs "$work/docs" >/dev/null
mkdir -p "$stage/usr/share/man/man1"
for page in "$work/docs/man/man1/"*.1; do
    gzip -9n < "$page" > "$stage/usr/share/man/man1/$(basename "$page").gz"
done
for dir in bash-completion/completions zsh/site-functions fish/vendor_completions.d; do
    mkdir -p "$stage/usr/share/$dir"
    cp "$work/docs/$dir/"* "$stage/usr/share/$dir/"
done
install -D -m 0644 -t "$stage/usr/lib/systemd/system" packaging/systemd/*.service
install -D -m 0644 packaging/sysusers.d/stx-patch.conf "$stage/usr/lib/sysusers.d/stx-patch.conf"
install -D -m 0644 -t "$stage/etc/stx-patch" packaging/etc/controller.toml packaging/etc/agent.toml
install -d -m 0750 "$stage/var/lib/stx-patch"
install -D -m 0644 README.md "$stage/usr/share/doc/stx-patch/README.md"

# After install: the controller's user, and systemd told about the units. Inside another
# root (dpkg --root, rpm --root) only the user is created there; the host is left alone.
postinst() {
    cat <<'SCRIPT'
#!/bin/sh
set -e
root="${DPKG_ROOT:-}"
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers --root="${root:-/}" /usr/lib/sysusers.d/stx-patch.conf || true
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
SCRIPT
}

# The .deb.
deb="$work/deb"
cp -a "$stage" "$deb"
mkdir -p "$deb/DEBIAN"
size=$(du -sk "$stage" | cut -f1)
cat > "$deb/DEBIAN/control" <<CONTROL
Package: stx-patch
Version: $version
Architecture: $arch_deb
Maintainer: stx-patch developers <stx-patch@localhost>
Installed-Size: $size
Depends: libc6
Recommends: rpm, systemd
Section: admin
Priority: optional
Description: StarlingX software patching: patch tools, controller and host agent
 Builds signed StarlingX patches, keeps a controller's patch store and software
 repository, installs patches on every host and orchestrates rollouts.
CONTROL
printf '/etc/stx-patch/controller.toml\n/etc/stx-patch/agent.toml\n' > "$deb/DEBIAN/conffiles"
postinst > "$deb/DEBIAN/postinst"
chmod 0755 "$deb/DEBIAN/postinst"
compress=(-Zxz)
[ -n "$fast" ] && compress=(-Zgzip -z1)
dpkg-deb --root-owner-group "${compress[@]}" --build "$deb" "$out/stx-patch_${version}_${arch_deb}.deb" >/dev/null

# The .rpm: the staged tree as it is (the binary is built already).
top="$work/rpm"
mkdir -p "$top"/{BUILD,RPMS,SOURCES,SPECS,SRPMS}
spec="$top/SPECS/stx-patch.spec"
{
    echo "Name: stx-patch"
    echo "Version: $version"
    echo "Release: 1"
    echo "Summary: StarlingX software patching: patch tools, controller and host agent"
    echo "License: Apache-2.0"
    echo "Recommends: systemd"
    echo "AutoReqProv: no"
    echo "%description"
    echo "Builds signed StarlingX patches, keeps a controller's patch store and software"
    echo "repository, installs patches on every host and orchestrates rollouts."
    echo "%install"
    echo "cp -a '$stage/.' %{buildroot}/"
    echo "%post"
    postinst | tail -n +2
    echo "%files"
    echo "/usr/lib/stx-patch"
    echo "/usr/lib/systemd/system/sw-patch-controller.service"
    echo "/usr/lib/systemd/system/sw-patch-agent.service"
    echo "/usr/lib/sysusers.d/stx-patch.conf"
    for tool in $tools; do echo "/usr/bin/$tool"; done
    echo "/usr/share/man/man1/*"
    echo "/usr/share/bash-completion/completions/*"
    echo "/usr/share/zsh/site-functions/*"
    echo "/usr/share/fish/vendor_completions.d/*"
    echo "%doc /usr/share/doc/stx-patch/README.md"
    echo "%dir /etc/stx-patch"
    echo "%config(noreplace) /etc/stx-patch/controller.toml"
    echo "%config(noreplace) /etc/stx-patch/agent.toml"
    echo "%dir %attr(0750, root, root) /var/lib/stx-patch"
} > "$spec"
payload="w9.xzdio"
[ -n "$fast" ] && payload="w1.gzdio"
rpmbuild -bb --quiet \
    --define "_topdir $top" \
    --define "_binary_payload $payload" \
    --define "debug_package %{nil}" \
    --define "__strip /bin/true" \
    --define "_build_id_links none" \
    --define "__os_install_post %{nil}" \
    "$spec"
cp "$top/RPMS/$arch_rpm/stx-patch-$version-1.$arch_rpm.rpm" "$out/"
echo "$out/stx-patch_${version}_${arch_deb}.deb"
echo "$out/stx-patch-$version-1.$arch_rpm.rpm"
