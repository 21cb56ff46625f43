#!/usr/bin/env bash
# Baseline code first (`cold_start = "baseline"`) against today's cold start, per module of the
# corpus, from an empty cache each time:
#   first request: the module's code ready to run (the `-v` report: compiled, or compiled
#                  baseline code), today and with baseline first;
#   optimized:     when the optimized artifact is stored and every later request uses it (with
#                  baseline first: the baseline time plus the `-v` report's upgrade time);
# and what baseline code costs at run time on CPU-bound work (a kernel, a resvg render, a yosys
# synthesis): the median wall time of warm runs of optimized code against the guest's time on
# baseline code (a cold baseline run's wall time less its compile and its wait at exit).
#
# Usage: scripts/bench-baseline.sh [RUNS]   (default 3; needs scripts/fetch-corpus.sh)
# Builds the release binary when WARMCACHE_BIN does not name one.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
CORPUS=${WARMCACHE_CORPUS:-$HOME/.cache/warmcache-corpus}/set
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}"
BIN=${WARMCACHE_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release --quiet -p warmcache
    BIN="$CARGO_TARGET_DIR/release/warmcache"
fi
[ -f "$CORPUS/yosys.wasm" ] || { echo "run scripts/fetch-corpus.sh first" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# One cold run from an empty cache with extra flags $1 of the rest; prints "ready_ms
# optimized_ms guest_ms": when the code was ready, when the optimized artifact was stored, and
# the wall time left for the guest (wall less compile and the wait at exit).
cold() {
    local flags=$1 start end report ready upgrade waited wall
    shift
    rm -rf "$WORK/cache"
    start=$(date +%s%N)
    # shellcheck disable=SC2086
    report=$("$BIN" --cache-dir "$WORK/cache" $flags -v run "$@" 2>&1 >/dev/null) || true
    end=$(date +%s%N)
    wall=$(((end - start) / 1000000))
    ready=$(sed -n 's/.* in \([0-9.]*\) ms.*/\1/p' <<<"$report" | head -1)
    [ -n "$ready" ] || { echo "no -v report: $report" >&2; exit 1; }
    upgrade=$(sed -n 's/.*optimized code stored \([0-9.]*\) s after.*/\1/p' <<<"$report")
    waited=$(sed -n 's/.*(\([0-9.]*\) s waited at exit).*/\1/p' <<<"$report")
    awk -v r="$ready" -v u="${upgrade:-0}" -v w="${waited:-0}" -v t="$wall" \
        'BEGIN { printf "%d %d %d\n", r, r + u * 1000, t - r - w * 1000 }'
}

# Wall milliseconds of one warm run (the cache filled by a run before).
warm() {
    local start end
    start=$(date +%s%N)
    "$BIN" --cache-dir "$WORK/cache" run "$@" >/dev/null 2>&1 || true
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

echo "First request and optimized code in use, from an empty cache (median of $RUNS, ms):"
printf '%-8s %12s %12s %6s %14s %6s\n' module today baseline ratio optimized ratio
startup() {
    local name=$1
    shift
    : >"$WORK/today"
    : >"$WORK/base"
    for _ in $(seq "$RUNS"); do
        cold "" "$@" >>"$WORK/today"
        cold "--cold-start baseline" "$@" >>"$WORK/base"
    done
    local today ready optimized
    today=$(cut -d' ' -f1 <"$WORK/today" | median)
    ready=$(cut -d' ' -f1 <"$WORK/base" | median)
    optimized=$(cut -d' ' -f2 <"$WORK/base" | median)
    printf '%-8s %12s %12s %6s %14s %6s\n' "$name" "$today" "$ready" "$(ratio "$ready" "$today")" \
        "$optimized" "$(ratio "$optimized" "$today")"
}
startup yosys "$CORPUS/yosys.wasm" -V
startup esbuild "$CORPUS/esbuild.wasm" --version
startup resvg "$CORPUS/resvg.wasm" --version

# CPU-bound work: 200 million iterations of integer and SIMD arithmetic.
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
{
    echo '<svg xmlns="http://www.w3.org/2000/svg" width="1600" height="1600">'
    echo '<defs><radialGradient id="g"><stop offset="0" stop-color="#f80"/><stop offset="1" stop-color="#08f" stop-opacity="0.3"/></radialGradient>'
    echo '<filter id="b"><feGaussianBlur stdDeviation="6"/></filter></defs>'
    for i in $(seq 0 59); do
        echo "<circle cx=\"$(((i * 37) % 1600))\" cy=\"$(((i * 91) % 1600))\" r=\"$((40 + i % 120))\" fill=\"url(#g)\" filter=\"url(#b)\"/>"
    done
    echo '</svg>'
} >"$WORK/busy.svg"
# A design for yosys to synthesize: multipliers and an adder tree.
cat >"$WORK/design.v" <<'EOF'
module top(input [23:0] a, b, c, d, output [47:0] y);
  assign y = a * b + c * d + (a ^ c) * (b | d);
endmodule
EOF

echo
echo "Run time of optimized and baseline code (median of $RUNS, ms):"
printf '%-8s %12s %12s %6s\n' work optimized baseline ratio
runtime() {
    local name=$1
    shift
    : >"$WORK/opt"
    : >"$WORK/base"
    for _ in $(seq "$RUNS"); do
        cold "--cold-start baseline" "$@" | cut -d' ' -f3 >>"$WORK/base"
        warm "$@" >>"$WORK/opt"
    done
    local optimized baseline
    optimized=$(median <"$WORK/opt")
    baseline=$(median <"$WORK/base")
    printf '%-8s %12s %12s %6s\n' "$name" "$optimized" "$baseline" "$(ratio "$baseline" "$optimized")"
}
runtime kernel "$WORK/kernel.wat"
runtime resvg --dir "$WORK::/work" "$CORPUS/resvg.wasm" -- /work/busy.svg /work/busy.png
[ -s "$WORK/busy.png" ] || { echo "resvg rendered nothing: its figures are not a render" >&2; exit 1; }
runtime yosys --dir "$WORK::/work" "$CORPUS/yosys.wasm" -- -q -p "read_verilog /work/design.v; synth -top top; stat"
