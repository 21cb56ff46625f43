#!/usr/bin/env bash
# A new host's first request of a large module whose entry is in the fleet's bucket (moto's S3
# server on loopback), without and with `warmcache prefetch` run before it. A producer fills
# the bucket once (`precompile`); each run starts a new host with an empty file tier:
#   without:  the `-v` report's time to a loaded module of the first `run` (read from the
#             bucket, verified, promoted into the file tier);
#   with:     `prefetch` (its whole wall time), then the first `run`'s report time.
#
# Usage: scripts/bench-prefetch.sh [RUNS]   (default 3; needs scripts/fetch-corpus.sh, and
#        moto_server from scripts/test.sh). Builds the release binary when WARMCACHE_BIN does
#        not name one. WARMCACHE_BENCH_MODULE names another module (default: yosys).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
# shellcheck source=scripts/bench-setup.sh
. scripts/bench-setup.sh
MODULE=${WARMCACHE_BENCH_MODULE:-$CORPUS/yosys.wasm}
[ -f "$MODULE" ] || { echo "run scripts/fetch-corpus.sh first" >&2; exit 1; }
start_moto || { echo "moto_server not found: run scripts/test.sh once" >&2; exit 1; }

ready() { sed -n 's/.* in \([0-9.]*\) ms.*/\1/p' | head -1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

"$BIN" --config "$(node_config producer fleet)" precompile "$MODULE" >/dev/null
: >"$WORK/without"
: >"$WORK/prefetch"
: >"$WORK/with"
for run in $(seq "$RUNS"); do
    config=$(node_config "cold.$run" fleet)
    "$BIN" --config "$config" -v run "$MODULE" -- -V 2>&1 >/dev/null | ready >>"$WORK/without"
    config=$(node_config "warmed.$run" fleet)
    start=$(now_ms)
    "$BIN" --config "$config" prefetch >/dev/null
    echo $(($(now_ms) - start)) >>"$WORK/prefetch"
    "$BIN" --config "$config" -v run "$MODULE" -- -V 2>&1 >/dev/null | ready >>"$WORK/with"
done
without=$(median <"$WORK/without")
with=$(median <"$WORK/with")
echo "First request of $(basename "$MODULE") on a new host, entry in the bucket (median of $RUNS, ms):"
printf '%-34s %10s\n' "without prefetch" "$without"
printf '%-34s %10s\n' "prefetch (whole command, before)" "$(median <"$WORK/prefetch")"
printf '%-34s %10s %6s\n' "with prefetch" "$with" "$(ratio "$with" "$without")"
