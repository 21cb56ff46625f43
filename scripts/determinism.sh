#!/usr/bin/env bash
# Whether wasmtime compiles each corpus module to the same bytes twice: `precompile` into a fresh
# file tier, then `audit`, which compiles every module again in another process (parallel
# compilation on in both) and compares the artifacts byte for byte. `warmcache audit` rests on
# this; docs/BENCHMARKS.md "Determinism" has the result.
#
# Usage: scripts/determinism.sh [CORPUS_DIR]   (default ~/.cache/warmcache-corpus/set)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-$HOME/.cache/warmcache-corpus/set}
[ -d "$corpus" ] || scripts/fetch-corpus.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}
cargo build -q --release -p warmcache
warmcache="$CARGO_TARGET_DIR/release/warmcache"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$warmcache" --cache-dir "$dir" --tiers fs precompile "$corpus"/*.wasm
"$warmcache" --cache-dir "$dir" --tiers fs audit "$corpus"/*.wasm
