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
# shellcheck source=scripts/bench-setup.sh
. scripts/bench-setup.sh
[ -f "$CORPUS/yosys.wasm" ] || { echo "run scripts/fetch-corpus.sh first" >&2; exit 1; }

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
startup yosys "$CORPUS/yosys.wasm" -- -V
startup boolector "$CORPUS/boolector.wasm" -- --version
startup resvg "$CORPUS/resvg.wasm" -- --version

# Four nodes (each its own directory) on one bucket of moto's S3 server, started together on
# yosys: when the slowest node's code was ready, and when every node had the optimized artifact.
fleet() {
    local mode=$1 prefix=$2 i ready=0 optimized=0 report r u config pids=()
    for i in 1 2 3 4; do
        config=$(node_config "node.$prefix.$i" "$prefix" "cold_start = \"$mode\"")
        "$BIN" --config "$config" -v run "$CORPUS/yosys.wasm" -- -V \
            >/dev/null 2>"$WORK/err.$prefix.$i" &
        pids+=("$!")
    done
    wait "${pids[@]}"
    for i in 1 2 3 4; do
        report=$(cat "$WORK/err.$prefix.$i")
        r=$(sed -n 's/.* in \([0-9.]*\) ms.*/\1/p' <<<"$report" | head -1)
        u=$(sed -n 's/.*optimized code stored \([0-9.]*\) s after.*/\1/p' <<<"$report")
        ready=$(awk -v a="$ready" -v b="${r:-0}" 'BEGIN { print (b > a) ? b : a }')
        optimized=$(awk -v a="$optimized" -v b="${r:-0}" -v u="${u:-0}" \
            'BEGIN { t = b + u * 1000; print (t > a) ? t : a }')
    done
    printf '%-22s %14.0f %14.0f\n' "4 nodes, $mode" "$ready" "$optimized"
}
if start_moto; then
    echo
    echo "yosys on 4 nodes sharing a bucket, cold (ms; the slowest node):"
    printf '%-22s %14s %14s\n' fleet "code ready" "optimized"
    fleet optimized today
    fleet baseline baseline
else
    echo "moto_server not found: run scripts/test.sh once for the fleet figures" >&2
fi

# shellcheck source=scripts/workloads.sh
. scripts/workloads.sh
write_kernel "$WORK/kernel.wat"
write_busy_svg "$WORK/busy.svg"
# A design for yosys to synthesize (about 60,000 cells: four 48-bit multipliers and an adder
# tree), in a copy of yosys's root (its share directory, from scripts/fetch-corpus.sh).
[ -f "$CORPUS/yosys-root/share/techmap.v" ] || { echo "run scripts/fetch-corpus.sh again" >&2; exit 1; }
cp -r "$CORPUS/yosys-root" "$WORK/yosys"
cat >"$WORK/yosys/design.v" <<'EOF'
module top(input clk, input [47:0] a, b, c, d, output reg [95:0] y);
  always @(posedge clk) y <= a * b + c * d + (a ^ c) * (b | d) + (a + b) * (c - d);
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
# ABC is a separate program that a WASI guest cannot start: synthesis without it.
runtime yosys --dir "$WORK/yosys::/" "$CORPUS/yosys.wasm" -- \
    -q -p "read_verilog /design.v; synth -top top -noabc; tee -q -o /stat.txt stat"
grep -q "Number of cells" "$WORK/yosys/stat.txt" ||
    { echo "yosys synthesized nothing: its figures are not a synthesis" >&2; exit 1; }
