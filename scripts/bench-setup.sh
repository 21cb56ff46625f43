# Set-up shared by the benchmark scripts (sourced, not run): the corpus directory, the release
# binary (built unless WARMCACHE_BIN names one), a work directory removed at exit, and the
# median and ratio helpers.

CORPUS=${WARMCACHE_CORPUS:-$HOME/.cache/warmcache-corpus}/set
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}"
BIN=${WARMCACHE_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release --quiet -p warmcache
    BIN="$CARGO_TARGET_DIR/release/warmcache"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# median: the median of the numbers on standard input, one per line.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# start_moto: starts moto's S3 server (installed by scripts/test.sh) on a free port with a bucket
# `bench`, stopped at exit, and exports AWS_* (AWS_ENDPOINT: its address) and BENCH_SECRET for
# the nodes' configurations. Returns 1 when moto_server is not installed.
start_moto() {
    local moto="${WARMCACHE_MOTO_SERVER:-$HOME/.cache/warmcache-venv/bin/moto_server}" port
    [ -x "$moto" ] || return 1
    port=$((20000 + RANDOM % 20000))
    "$moto" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    MOTO_PID=$!
    trap 'kill "$MOTO_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
    for _ in $(seq 50); do curl -s "http://127.0.0.1:$port" >/dev/null && break; sleep 0.2; done
    curl -s -X PUT "http://127.0.0.1:$port/bench" >/dev/null
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
    export AWS_ENDPOINT="http://127.0.0.1:$port"
    export BENCH_SECRET="bench-secret-bench-secret-bench-secret"
}

# node_config NAME PREFIX [ENGINE LINES]: writes $WORK/NAME.toml, a node with a file tier of its
# own ($WORK/NAME) over the bucket `bench` under PREFIX at $AWS_ENDPOINT (the secret in
# BENCH_SECRET; ENGINE LINES go in its [engine] table), and prints its path.
node_config() {
    local name=$1 prefix=$2 engine=${3:-}
    {
        printf 'secret_env = "BENCH_SECRET"\n[engine]\n%s\n\n' "$engine"
        printf '[[tiers]]\nkind = "fs"\npath = "%s"\n\n' "$WORK/$name"
        printf '[[tiers]]\nkind = "s3"\nurl = "s3://bench/%s"\nendpoint = "%s"\n' "$prefix" "$AWS_ENDPOINT"
        printf 'region = "us-east-1"\nallow_http = true\n'
    } >"$WORK/$name.toml"
    echo "$WORK/$name.toml"
}
