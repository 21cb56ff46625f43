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
CORPUS=${WARMCACHE_CORPUS:-$HOME/.cache/warmcache-corpus}/set
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}"
BIN=${WARMCACHE_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release --quiet -p warmcache
    BIN="$CARGO_TARGET_DIR/release/warmcache"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# A kernel whose code depends on the level: scalar popcnt and lzcnt (instructions from v2 and
# v3, bit tricks in v1), and SIMD multiplies and rounding (SSE4.1 from v2, longer sequences in
# v1), 200 million iterations.
cat >"$WORK/kernel.wat" <<'EOF'
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32) (local $acc i64) (local $v v128) (local $w v128)
    (local.set $v (v128.const f32x4 1.5 2.25 3.125 4.0625))
    (local.set $w (v128.const i32x4 3 5 7 11))
    (loop $l
      (local.set $acc (i64.add (local.get $acc)
        (i64.add (i64.popcnt (i64.mul (i64.extend_i32_u (local.get $i)) (i64.const 0x9E3779B97F4A7C15)))
                 (i64.extend_i32_u (i32.clz (i32.or (local.get $i) (i32.const 1)))))))
      (local.set $v (f32x4.floor (f32x4.add (local.get $v) (v128.const f32x4 0.75 0.5 0.25 0.125))))
      (local.set $w (i32x4.mul (local.get $w) (v128.const i32x4 1664525 22695477 1103515245 134775813)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 200000000))))
    (call $exit (i32.and (i32.const 0)
      (i32.xor (i32.wrap_i64 (local.get $acc))
        (i32.xor (i32x4.extract_lane 0 (local.get $w)) (i32.trunc_f32_s (f32x4.extract_lane 0 (local.get $v))))))))
)
EOF

# An SVG that keeps a renderer busy: overlapping translucent gradients and blurs.
{
    echo '<svg xmlns="http://www.w3.org/2000/svg" width="1600" height="1600">'
    echo '<defs><radialGradient id="g"><stop offset="0" stop-color="#f80"/><stop offset="1" stop-color="#08f" stop-opacity="0.3"/></radialGradient>'
    echo '<filter id="b"><feGaussianBlur stdDeviation="6"/></filter></defs>'
    for i in $(seq 0 59); do
        echo "<circle cx=\"$(((i * 37) % 1600))\" cy=\"$(((i * 91) % 1600))\" r=\"$((40 + i % 120))\" fill=\"url(#g)\" filter=\"url(#b)\"/>"
    done
    echo '</svg>'
} >"$WORK/busy.svg"

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

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

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
