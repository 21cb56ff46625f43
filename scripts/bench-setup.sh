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
