#!/usr/bin/env bash
# Trace-driven simulation of eviction over the real disk tiers (fs, redb, RocksDB): Zipf
# requests for a population of modules with the corpus's artifact sizes (scaled down) and
# compile times; compile-seconds lost to eviction and byte hit rate, least recently used
# against cost-aware (GreedyDual-Size-Frequency), with a static oracle for scale. Prints a
# Markdown table. See cli/benches/eviction.rs for the model.
#
# Usage: scripts/bench-eviction.sh [-- OPTIONS]   e.g. -- --requests=5000 --backends=redb
#        Stores go on /dev/shm when it exists (a tmpfs: fsync is not what is measured).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}
[ "${1:-}" = "--" ] && shift
dir=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && dir=/dev/shm
exec cargo bench --quiet -p warmcache --features rocksdb --bench eviction -- --dir="$dir" "$@"
