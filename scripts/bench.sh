#!/usr/bin/env bash
# Every regression benchmark (criterion), kept apart from the tests: key building, envelope
# verification, memory hits, each backend's get and put against its raw API, and wasmtime warm
# starts. Usage: scripts/bench.sh [criterion filter]
#
# Builds into $CARGO_TARGET_DIR (default ~/.cache/warmcache-bench-target). Uses moto's server
# (installed by scripts/test.sh) for the S3 figures, and the corpus (scripts/fetch-corpus.sh) when it
# has been fetched.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-bench-target}"
VENV="${WARMCACHE_VENV:-$HOME/.cache/warmcache-venv}"
if [ -z "${WARMCACHE_MOTO_SERVER:-}" ] && [ -x "$VENV/bin/moto_server" ]; then
  export WARMCACHE_MOTO_SERVER="$VENV/bin/moto_server"
fi
if [ -z "${WARMCACHE_MOTO_SERVER:-}" ] && ! command -v moto_server >/dev/null; then
  echo "moto_server not found: run scripts/test.sh once to install it" >&2
  exit 1
fi
cargo bench --workspace -- "$@"
