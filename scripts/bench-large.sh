#!/usr/bin/env bash
# Large caches: `warmcache ls`, `stats` and `gc` over a file tier and a redb tier holding 10,000
# and 100,000 small entries, and over an S3 tier (moto on loopback) holding 200 and 2,000,
# to see how each grows. Release build; medians of 3 runs of each command, warm page cache.
#
# Usage: scripts/bench-large.sh [SIZES]   (default "10000 100000"; S3 uses a fiftieth of each)
# Uses moto's server from scripts/test.sh's venv. Fills scratch directories under
# ${TMPDIR:-/tmp} (about 1 GB at 100,000 entries) and removes them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}"
VENV="${WARMCACHE_VENV:-$HOME/.cache/warmcache-venv}"
MOTO="${WARMCACHE_MOTO_SERVER:-$VENV/bin/moto_server}"
SIZES="${1:-10000 100000}"
cargo build --release -q -p warmcache --bin warmcache --example fill
exec python3 scripts/bench-large.py "$CARGO_TARGET_DIR/release" "$MOTO" $SIZES
