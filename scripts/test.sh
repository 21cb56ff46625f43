#!/usr/bin/env bash
# The whole test suite of warmcache, with the set-up a fresh machine needs.
#
#   scripts/test.sh
#
# Installs what is missing (libclang-dev through apt-get for RocksDB's bindings; moto's S3 server
# through pip into a venv), then runs rustfmt, clippy, every crate's tests, and the model-checked
# single-flight test. Safe to run again: present tools are not reinstalled.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
VENV="${WARMCACHE_VENV:-$HOME/.cache/warmcache-venv}"

step() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

install_libclang() {
    if dpkg -s libclang-dev >/dev/null 2>&1; then
        return 0
    fi
    step "installing libclang-dev (RocksDB's bindings need libclang)"
    if command -v apt-get >/dev/null 2>&1 &&
        as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null; then
        return 0
    fi
    step "error: could not install libclang-dev, which warmcache-rocksdb's build needs"
    return 1
}

install_strace() {
    if command -v strace >/dev/null 2>&1; then
        return 0
    fi
    step "installing strace (the file tier's durability test traces a writer's system calls)"
    if command -v apt-get >/dev/null 2>&1 &&
        as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; then
        return 0
    fi
    step "warning: could not install strace; the durability test will say it is skipped"
}

install_moto() {
    if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
        return 0
    fi
    step "installing moto[server] into $VENV (the S3 tests' server)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
}

install_libclang
install_strace
install_moto
export PATH="$VENV/bin:$PATH"
export WARMCACHE_MOTO_SERVER="$VENV/bin/moto_server"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p warmcache-core --all-targets --features shuttle -- -D warnings
cargo clippy -p warmcache --all-targets --features rocksdb -- -D warnings

step "cargo doc (broken links and missing docs are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "cargo test"
cargo test --workspace

step "the CLI with RocksDB built in"
cargo test -p warmcache --features rocksdb --test cli

step "model-checked single-flight (shuttle)"
cargo test -p warmcache-core --features shuttle --lib single_flight::model_check
