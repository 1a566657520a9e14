#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every benchmark in BUILD/bench against the agent of the same (optimised) build; each writes
# its medians and ratios to bench/results/NAME.json; then bench/report.py writes
# bench/results/REPORT.md and its plots. BENCH_ONLY="api boot" runs only those.
set -eu
build=${1:?usage: bench/run.sh BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CORDON_AGENT="$root/$build/bin/cordon-agent"
export CORDON_IMAGES="${CORDON_IMAGES:-$root/build/images}"
# Trees live on tmpfs where there is one, so the archive figures measure cordon rather than the
# disk's inode allocator (which, on ext4 after many create/delete rounds, dominated and drifted).
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi
mkdir -p bench/results
for bin in "$build"/bench/*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    if [ -n "${BENCH_ONLY:-}" ] && ! [[ " $BENCH_ONLY " == *" $name "* ]]; then
        continue
    fi
    echo "== bench/$name"
    BENCH_OUT="bench/results/$name.json" "$bin"
done
python3 bench/report.py bench/results
