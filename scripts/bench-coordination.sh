#!/usr/bin/env bash
# Cold compiles coordinated across processes and nodes, measured whole-process.
#
#   scripts/bench-coordination.sh MODULE.wasm [PROCESSES] [-- ARGS FOR THE MODULE]
#
# Prints, for a cold cache each time: one process alone; PROCESSES processes (default 8)
# started together on one cache directory; and, when moto's server is installed (by
# scripts/test.sh), 4 nodes (each its own directory) on one bucket against one node alone.
# For each: wall time and how many processes compiled, from their own `-v` reports.
set -euo pipefail
cd "$(dirname "$0")/.."
module="${1:?usage: scripts/bench-coordination.sh MODULE.wasm [PROCESSES] [-- ARGS]}"
shift
procs=8
if [ $# -gt 0 ] && [ "$1" != "--" ]; then procs="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
module_args=("$@")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-bench-target}"
cargo build --release -p warmcache --quiet
bin="$CARGO_TARGET_DIR/release/warmcache"
work="$(mktemp -d)"
moto_pid=""
cleanup() { [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

now() { date +%s.%N; }

# run_group NAME COUNT CONFIG_FOR_PROCESS_I...: starts COUNT processes at once, waits for all.
run_group() {
  local name="$1" count="$2" config_fn="$3"
  local start end compiled=0 failed=0
  start="$(now)"
  for i in $(seq 1 "$count"); do
    "$config_fn" "$i" >"$work/config.$i.toml"
    "$bin" --config "$work/config.$i.toml" -v run "$module" -- "${module_args[@]}" \
      >"$work/out.$i" 2>"$work/err.$i" &
  done
  for i in $(seq 1 "$count"); do wait -n || failed=$((failed + 1)); done
  end="$(now)"
  for i in $(seq 1 "$count"); do
    grep -q "compiled" "$work/err.$i" && compiled=$((compiled + 1))
  done
  printf '%-40s %8.2f s   compiles: %d of %d   failed: %d\n' \
    "$name" "$(echo "$end - $start" | bc)" "$compiled" "$count" "$failed"
}

local_config() { printf '[[tiers]]\nkind = "fs"\npath = "%s"\n' "$work/local.$RUN"; }
node_config() {
  printf 'secret_env = "BENCH_SECRET"\n\n'
  printf '[[tiers]]\nkind = "fs"\npath = "%s"\n\n' "$work/node.$RUN.$1"
  printf '[[tiers]]\nkind = "s3"\nurl = "s3://bench/%s"\nendpoint = "%s"\n' "$RUN" "$AWS_ENDPOINT"
  printf 'region = "us-east-1"\nallow_http = true\n'
}
export BENCH_SECRET="bench-secret-bench-secret-bench-secret"

RUN=alone; run_group "1 process, cold" 1 local_config
RUN=group; run_group "$procs processes, one directory, cold" "$procs" local_config

moto="${WARMCACHE_MOTO_SERVER:-$HOME/.cache/warmcache-venv/bin/moto_server}"
if [ -x "$moto" ]; then
  port=$((20000 + RANDOM % 20000))
  "$moto" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  moto_pid=$!
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$port" >/dev/null && break; sleep 0.2; done
  curl -s -X PUT "http://127.0.0.1:$port/bench" >/dev/null
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  export AWS_ENDPOINT="http://127.0.0.1:$port"
  RUN=node1; run_group "1 node on a bucket, cold" 1 node_config
  RUN=fleet; run_group "4 nodes on one bucket, cold" 4 node_config
else
  echo "moto_server not found: run scripts/test.sh once for the bucket figures" >&2
fi
