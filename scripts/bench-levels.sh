#!/usr/bin/env bash
# What a CPU level costs at run time: warm `warmcache run`s of CPU-bound modules compiled for
# this host (native), for the best CPU level this host runs, and for x86-64-v1, each from a
# cache filled by one run first. Prints the median wall time of each and its ratio to native.
#
# Usage: scripts/bench-levels.sh [RUNS]   (default 7; x86-64 hosts; resvg needs
#        scripts/fetch-corpus.sh first and is skipped without it)
# Builds the release binary when WARMCACHE_BIN does not name one.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
# shellcheck source=scripts/bench-setup.sh
. scripts/bench-setup.sh

# shellcheck source=scripts/workloads.sh
. scripts/workloads.sh
write_kernel "$WORK/kernel.wat"
write_busy_svg "$WORK/busy.svg"

# The best level this host runs, as `cpu_level = "auto"` picks it.
best=$("$BIN" --cache-dir "$WORK/probe" --cpu-level auto -v run "$WORK/kernel.wat" 2>&1 >/dev/null |
    sed -n 's/.* compiled for \([^ ]*\) in .*/\1/p')
[ -n "$best" ] || { echo "no CPU level found for this host" >&2; exit 1; }

# Wall milliseconds of one warm run with extra flags $1 (a string) of the rest.
once() {
    local flags=$1 start end
    shift
    start=$(date +%s%N)
    # shellcheck disable=SC2086
    "$BIN" --cache-dir "$WORK/cache" $flags run "$@" >/dev/null 2>&1 || true
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}


measure() {
    local label=$1
    shift
    local native_ms=""
    for config in native "$best" x86-64-v1; do
        local flags=""
        [ "$config" = native ] || flags="--cpu-level $config"
        once "$flags" "$@" >/dev/null # fill the cache
        : >"$WORK/times"
        for _ in $(seq "$RUNS"); do
            once "$flags" "$@" >>"$WORK/times"
        done
        local ms
        ms=$(median <"$WORK/times")
        [ -n "$native_ms" ] || native_ms=$ms
        printf '%-10s %-10s %8s ms  %5.2fx\n' "$label" "$config" "$ms" \
            "$(awk -v a="$ms" -v b="$native_ms" 'BEGIN { print a / b }')"
    done
}

printf '%-10s %-10s %11s  %s\n' module code "wall" "vs native"
measure kernel "$WORK/kernel.wat"
if [ -f "$CORPUS/resvg.wasm" ]; then
    measure resvg --dir "$WORK::/work" "$CORPUS/resvg.wasm" -- /work/busy.svg /work/busy.png
    [ -s "$WORK/busy.png" ] || { echo "resvg rendered nothing: the figures above are not a render" >&2; exit 1; }
else
    echo "resvg skipped: run scripts/fetch-corpus.sh" >&2
fi
