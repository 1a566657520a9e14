#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the devbox image: a Debian bookworm root (mmdebstrap, Debian packages only) with a
# toolchain and the static cordon-agent, as a read-only qcow2 base. Each task boots it through the
# minimal initramfs (cordon.root=/dev/vda) on a qcow2 overlay of its own.
set -euo pipefail
agent=${1:?usage: images/devbox.sh AGENT_STATIC OUT}
out=${2:?}
here=$(cd "$(dirname "$0")" && pwd)
packages=git,make,gcc,libc6-dev,python3,ca-certificates,busybox,procps,less,xz-utils,nodejs
# npm itself from its registry (Debian's npm is hundreds of packages): one tarball that bundles its
# dependencies, pinned by version and checked against the registry's integrity hash.
npm_version=10.8.2
npm_integrity=sha512-x/AIjFIKRllrhcb48dqUNAAZl0ig9+qMuN91RpZo3Cb2+zuibfh+KISl6+kVVyktDz230JKc208UkQwwMqyB+w==
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

curl -fsSL --retry 3 -o "$work/npm.tgz" "https://registry.npmjs.org/npm/-/npm-$npm_version.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$work/npm.tgz" | base64 -w0)"
if [ "$got" != "$npm_integrity" ]; then
    echo "images/devbox.sh: npm-$npm_version.tgz is $got, not $npm_integrity" >&2
    exit 1
fi

mmdebstrap --quiet --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    bookworm "$work/root"
mkdir -p "$work/root/usr/local/lib/node_modules/npm" "$work/root/usr/local/bin"
tar -xzf "$work/npm.tgz" -C "$work/root/usr/local/lib/node_modules/npm" --strip-components=1 \
    --no-same-owner
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$work/root/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$work/root/usr/local/bin/npx"
install -m 0755 "$agent" "$work/root/sbin/cordon-agent"
install -m 0755 "$here/init-devbox" "$work/root/sbin/cordon-init"
mkdir -p "$work/root/workspace"
rm -rf "$work/root/var/cache/apt/archives"/*.deb "$work/root/var/lib/apt/lists"/*

# Room for what tasks build: the overlay only stores what changes, the size is a ceiling.
used_mib=$(du -sm "$work/root" | cut -f1)
size_mib=$((used_mib + 2048))
mkfs.ext4 -q -F -L cordon-devbox -d "$work/root" "$work/root.img" "${size_mib}M"
mkdir -p "$(dirname "$out")"
qemu-img convert -q -O qcow2 "$work/root.img" "$out.tmp"
chmod 0444 "$out.tmp"
mv -f "$out.tmp" "$out"
echo "devbox image: $out ($(du -h "$out" | cut -f1) qcow2, ${used_mib} MiB of files)"
