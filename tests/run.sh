#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every test binary under BUILD/tests (BUILD "-": none) and every fuzz target under
# FUZZ_BUILD for FUZZ_SECONDS each, then prints one line: "N passed, N failed[, N skipped]".
# A fuzz target's corpus grows in FUZZ_BUILD/corpus/NAME, seeded from tests/fuzz/corpus/NAME.
# After each test binary nothing of it may be left: no QEMU, cordond, agent or libvirt daemon it
# started, no cordon-* libvirt domain, no cordon-test-* folder; each leftover is a failure of
# NAME.leftovers (then removed, so the next binary starts clean). What was there before the run
# is not counted.
set -u
build=${1:?usage: tests/run.sh BUILD_DIR FUZZ_BUILD_DIR FUZZ_SECONDS}
fuzz_build=${2:?}
fuzz_seconds=${3:?}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export CORDON_AGENT="$root/$build/bin/cordon-agent"
export CORDON_IMAGES="${CORDON_IMAGES:-$root/build/images}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/cordon-tests-XXXXXX")
trap 'rm -rf "$log_dir"' EXIT

# What a test binary may leave behind: processes (QEMU, cordond, agents, the libvirt daemons the
# tests start with their pid files in test folders) and test folders, one per line.
leftovers() {
    pgrep -a -f 'qemu-system|cordond|cordon-agent|cordon-test-' | grep -v -e pgrep -e "$$ " |
        sed 's/^/process /'
    for d in /tmp/cordon-test-* /dev/shm/cordon-test-* ${TMPDIR:+$TMPDIR/cordon-test-*}; do
        [ -e "$d" ] && echo "folder $d"
    done | sort -u
    if [ -S /run/libvirt/libvirt-sock ] && command -v virsh >/dev/null; then
        timeout 10 virsh -c qemu:///system list --all --name 2>/dev/null | grep '^cordon-' |
            sed 's/^/domain /'
    fi
}
baseline=$(leftovers | sed 's/^process [0-9]* /process /')

passed=0 failed=0 skipped=0
test_bins=""
[ "$build" != "-" ] && test_bins=$(find "$build/tests" -type f -perm -u+x -name 'test_*' | sort)
for bin in $test_bins; do
    name=$(basename "$bin")
    out="$log_dir/$name.log"
    "$bin" >"$out" 2>&1
    status=$?
    p=$(grep -c '^PASS ' "$out") f=$(grep -c '^FAIL ' "$out") s=$(grep -c '^SKIP ' "$out")
    grep -E '^(PASS|FAIL|SKIP) |^  ' "$out"
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        # The binary itself died outside any test: count it, and show why.
        echo "FAIL $name (exit status $status)"
        tail -n 30 "$out"
        f=1
    elif [ "$f" -gt 0 ]; then
        # Sanitizer reports and the like, for the failures.
        grep -vE '^(PASS|FAIL|SKIP) |^  ' "$out" | tail -n 60
    fi
    # Whatever it started must be gone now (a moment for daemons on their way out).
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        left=$(leftovers | sed 's/^process [0-9]* /process /' | grep -vxF -e "${baseline:-@none@}")
        [ -z "$left" ] && break
        sleep 1
    done
    if [ -n "$left" ]; then
        echo "FAIL $name.leftovers"
        echo "$left" | sed 's/^/  /' | head -n 20
        f=$((f + 1))
        # Cleared for the next binary: processes by pid, domains, folders.
        leftovers | while read -r kind what rest; do
            key="$kind $what${rest:+ $rest}"
            [ "$kind" = process ] && key="process $rest"
            printf '%s\n' "$baseline" | grep -qxF -e "$key" && continue
            case $kind in
            process) kill -9 "$what" 2>/dev/null ;;
            domain) timeout 10 virsh -c qemu:///system destroy "$what" >/dev/null 2>&1 ;;
            folder) rm -rf "$what" ;;
            esac
        done
    fi
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done

for bin in $(find "$fuzz_build" -maxdepth 1 -type f -perm -u+x -name 'fuzz_*' 2>/dev/null | sort); do
    name=$(basename "$bin")
    corpus="$fuzz_build/corpus/$name"
    mkdir -p "$corpus"
    [ -d "tests/fuzz/corpus/$name" ] && cp -rn "tests/fuzz/corpus/$name/." "$corpus/"
    if "$bin" -max_total_time="$fuzz_seconds" -max_len=65536 -rss_limit_mb=2048 \
        -artifact_prefix="$log_dir/" "$corpus" >"$log_dir/$name.log" 2>&1; then
        runs=$(grep -oE 'Done [0-9]+ runs' "$log_dir/$name.log" | tail -n1)
        echo "PASS fuzz.$name (${fuzz_seconds} s, ${runs:-no summary})"
        passed=$((passed + 1))
    else
        echo "FAIL fuzz.$name"
        tail -n 40 "$log_dir/$name.log"
        for crash in "$log_dir"/crash-* "$log_dir"/leak-* "$log_dir"/timeout-*; do
            [ -e "$crash" ] || continue
            mkdir -p "$fuzz_build/crashes"
            cp "$crash" "$fuzz_build/crashes/$name-$(basename "$crash")"
            echo "  input kept as $fuzz_build/crashes/$name-$(basename "$crash"):" \
                "$(base64 -w0 "$crash" | head -c 400)"
        done
        failed=$((failed + 1))
    fi
done

line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ]
