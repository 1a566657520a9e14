#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the devbox image: a Debian bookworm root (mmdebstrap, Debian packages only) with a
# toolchain and the static cordon-agent, as a read-only qcow2 base. Each task boots it through the
# minimal initramfs (cordon.root=/dev/vda) on a qcow2 overlay of its own.
set -euo pipefail
agent=${1:?usage: images/devbox.sh AGENT_STATIC OUT}
out=${2:?}
here=$(cd "$(dirname "$0")" && pwd)
packages=git,make,gcc,libc6-dev,python3,ca-certificates,busybox,procps,less,xz-utils
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mmdebstrap --quiet --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    bookworm "$work/root"
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
