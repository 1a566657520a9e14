#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the bench-qga image for bench/qga: a minimal Debian bookworm root (mmdebstrap, Debian
# packages only) with qemu-guest-agent and the static cordon-agent side by side, booted like the
# devbox image (the minimal initramfs, cordon.root=/dev/vda). Not a sandbox image: it exists so
# both agents can be timed in the same guest.
set -euo pipefail
agent=${1:?usage: images/qga.sh AGENT_STATIC OUT}
out=${2:?}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mmdebstrap --quiet --variant=minbase --include=busybox,qemu-guest-agent \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$work/root"
install -m 0755 "$agent" "$work/root/sbin/cordon-agent"
install -m 0755 "$here/init-qga" "$work/root/sbin/cordon-init"
rm -rf "$work/root/var/cache/apt/archives"/*.deb "$work/root/var/lib/apt/lists"/*
used_mib=$(du -sm "$work/root" | cut -f1)
mkfs.ext4 -q -F -L cordon-qga -d "$work/root" "$work/root.img" "$((used_mib + 256))M"
mkdir -p "$(dirname "$out")"
qemu-img convert -q -O qcow2 "$work/root.img" "$out.tmp"
chmod 0444 "$out.tmp"
mv -f "$out.tmp" "$out"
echo "bench-qga image: $out ($(du -h "$out" | cut -f1) qcow2, ${used_mib} MiB of files)"
