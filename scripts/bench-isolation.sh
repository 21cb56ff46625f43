#!/usr/bin/env bash
# What compiling in a worker process costs (`isolate_compiles`): cold `warmcache precompile`
# runs of a small and a large module of the corpus, in this process and in the worker,
# alternated run by run, each into an empty cache directory. Prints the median wall time of
# each, and the difference.
#
# Usage: scripts/bench-isolation.sh [RUNS]   (default 7; needs scripts/fetch-corpus.sh first)
# Builds the release binary when WARMCACHE_BIN does not name one.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
# shellcheck source=scripts/bench-setup.sh
. scripts/bench-setup.sh

# Wall milliseconds of one cold precompile of $1 with isolate_compiles=$2.
once() {
    rm -rf "$WORK/cache"
    local start end
    start=$(date +%s%N)
    "$BIN" precompile --cache-dir "$WORK/cache" --isolate-compiles="$2" "$1" >/dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

printf '%-16s %10s %10s %10s\n' module "inline ms" "worker ms" "added ms"
for name in icepll resvg; do
    module="$CORPUS/$name.wasm"
    [ -f "$module" ] || { echo "missing $module: run scripts/fetch-corpus.sh" >&2; exit 1; }
    once "$module" false >/dev/null # warm the page cache
    : >"$WORK/inline"
    : >"$WORK/worker"
    for _ in $(seq "$RUNS"); do
        once "$module" false >>"$WORK/inline"
        once "$module" true >>"$WORK/worker"
    done
    inline=$(median <"$WORK/inline")
    worker=$(median <"$WORK/worker")
    printf '%-16s %10s %10s %10s\n' "$name ($(($(stat -c %s "$module") / 1024)) KiB)" \
        "$inline" "$worker" "$((worker - inline))"
done
