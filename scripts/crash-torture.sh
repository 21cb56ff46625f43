#!/usr/bin/env bash
# The crash torture at scale: 100 SIGKILLs of a writer mid-write per persistent backend (fs,
# redb, RocksDB), each followed by a reopen that must show every acknowledged put and no torn
# value. The test command (scripts/test.sh) runs the same tests with 10 kills each.
#
#   scripts/crash-torture.sh [KILLS]
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}"
export WARMCACHE_CRASH_KILLS="${1:-100}"

# One workspace-wide invocation: `-p` on a single crate resolves other features and would
# rebuild RocksDB's C++ library.
printf '==> fs, redb, RocksDB: %s kills each\n' "$WARMCACHE_CRASH_KILLS" >&2
cargo test --workspace --test integration conformance::crash_torture -- --exact --nocapture 2>&1 |
    grep -E 'Running|crash torture|test result|panicked|FAILED'
exit "${PIPESTATUS[0]}"
