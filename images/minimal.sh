#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the minimal initramfs: busybox-static, the static cordon-agent, exactly the kernel
# modules listed in images/minimal.modules (plus their dependencies, in load order) and
# images/init-minimal as /init. Output: OUT (an LZ4-compressed newc cpio).
set -euo pipefail
kernel=${1:?usage: images/minimal.sh KERNEL_DIR AGENT_STATIC OUT}
agent=${2:?}
out=${3:?}
here=$(cd "$(dirname "$0")" && pwd)
version=$(cat "$kernel/version")
moddir="$kernel/root/lib/modules/$version"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
cp "$agent" "$stage/sbin/cordon-agent"
install -m 0755 "$here/init-minimal" "$stage/init"

# Resolve dependencies from modules.dep ("path: dep dep ..."), dependencies first, each once.
declare -A seen=()
order=()
add_module() {
    local path=$1
    [ -n "${seen[$path]:-}" ] && return
    seen[$path]=1
    local deps
    deps=$(awk -F': ' -v p="$path" '$1 == p {print $2}' "$moddir/modules.dep")
    for dep in $deps; do add_module "$dep"; done
    order+=("$path")
}
while read -r name; do
    case "$name" in ''|'#'*) continue ;; esac
    path=$(awk -F: -v n="/$name.ko" 'index($1, n) && substr($1, length($1) - length(n) + 1) == n {print $1; exit}' "$moddir/modules.dep")
    if [ -z "$path" ]; then
        if grep -q "/$name.ko$" "$moddir/modules.builtin"; then continue; fi
        echo "images/minimal.sh: module $name not found in $version" >&2
        exit 1
    fi
    add_module "$path"
done < "$here/minimal.modules"
: > "$stage/etc/modules.load"
for path in "${order[@]}"; do
    mkdir -p "$stage/lib/modules/$(dirname "$path")"
    cp "$moddir/$path" "$stage/lib/modules/$path"
    echo "$path" >> "$stage/etc/modules.load"
done

mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) | lz4 -l -9 -q > "$out.tmp"
mv "$out.tmp" "$out"
echo "minimal initramfs: $out ($(du -h "$out" | cut -f1), modules: ${#order[@]})"
