#!/usr/bin/env bash
# The whole test suite of warmcache, with the set-up a fresh machine needs.
#
#   scripts/test.sh
#
# Installs what is missing (libclang-dev through apt-get for RocksDB's bindings; nginx and its
# dav-ext module through apt-get, the WebDAV server; moto's S3 server through pip into a venv;
# Azurite, the Azure Blob Storage emulator, through npm, with Node.js from apt-get when there is
# none), then runs rustfmt, clippy, the docs as docs.rs builds them,
# an MSRV build, cargo package, every crate's tests, and the model-checked single-flight test.
# Safe to run again: present tools are not reinstalled.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmcache-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
VENV="${WARMCACHE_VENV:-$HOME/.cache/warmcache-venv}"
AZURITE_DIR="${WARMCACHE_AZURITE_DIR:-$HOME/.cache/warmcache-azurite}"

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

install_nginx() {
    if [ -x /usr/sbin/nginx ] && [ -f /usr/lib/nginx/modules/ngx_http_dav_ext_module.so ]; then
        return 0
    fi
    step "installing nginx and its dav-ext module (the WebDAV tests' server)"
    if command -v apt-get >/dev/null 2>&1 &&
        as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            nginx libnginx-mod-http-dav-ext >/dev/null; then
        return 0
    fi
    step "error: could not install nginx and libnginx-mod-http-dav-ext, which the WebDAV tests need"
    return 1
}

install_moto() {
    if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
        return 0
    fi
    step "installing moto[server] into $VENV (the S3 tests' server)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
}

install_azurite() {
    if [ -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        step "installing Node.js and npm (Azurite, the Azure tests' server, is published on npm)"
        as_root apt-get update -qq &&
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    step "installing Azurite into $AZURITE_DIR (the Azure tests' server)"
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --silent --no-audit --no-fund azurite@3.35.0 >/dev/null
}

install_libclang
install_strace
install_nginx
install_moto
install_azurite
export PATH="$VENV/bin:$PATH"
export WARMCACHE_MOTO_SERVER="$VENV/bin/moto_server"
export WARMCACHE_AZURITE="$AZURITE_DIR/node_modules/.bin/azurite-blob"

# RocksDB's C++ library takes minutes to compile, and cargo compiles it again for every set of
# build-time dependencies it meets (the workspace's tests, one crate's clippy, the docs and the
# package verification each unify proc-macro features differently). Once it is built, every
# step links that one library through librocksdb-sys's ROCKSDB_LIB_DIR instead (kept in the
# target directory for the next run): the Rust crates are still built and verified in each
# step, against the same librocksdb-sys version. Called before the first build (a library from
# an earlier run) and after it.
reuse_rocksdb() {
    if [ -n "${ROCKSDB_LIB_DIR:-}" ]; then
        return 0
    fi
    local version kept out
    version=$(awk '/^name = "librocksdb-sys"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
    kept="$CARGO_TARGET_DIR/rocksdb-$version"
    if [ ! -f "$kept/librocksdb.a" ]; then
        for out in $(ls -dt "$CARGO_TARGET_DIR"/debug/build/librocksdb-sys-*/out 2>/dev/null); do
            if [ -f "$out/librocksdb.a" ] &&
                grep -q "cargo:cargo_manifest_dir=.*/librocksdb-sys-$version\$" "$out/../output" 2>/dev/null; then
                mkdir -p "$kept"
                ln -f "$out/librocksdb.a" "$kept/" 2>/dev/null || cp "$out/librocksdb.a" "$kept/"
                break
            fi
        done
    fi
    if [ -f "$kept/librocksdb.a" ]; then
        export ROCKSDB_LIB_DIR="$kept" ROCKSDB_STATIC=1
        step "RocksDB $version is built: every step links $kept/librocksdb.a"
    fi
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
reuse_rocksdb
cargo clippy --workspace --all-targets -- -D warnings
reuse_rocksdb
cargo clippy -p warmcache-core --all-targets --features shuttle -- -D warnings
cargo clippy -p warmcache --all-targets --features rocksdb -- -D warnings

step "cargo doc as docs.rs builds it (--cfg docsrs; broken links and missing docs are errors)"
RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo doc --workspace --no-deps --quiet

# The minimum supported Rust version is the workspace's rust-version: build with exactly it.
MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
case "$MSRV" in *.*.*) ;; *) MSRV="$MSRV.0" ;; esac
have=$(rustc --version | cut -d' ' -f2)
if [ "$have" = "$MSRV" ]; then
    step "MSRV: this toolchain is Rust $MSRV, the declared rust-version: every build here is the MSRV build"
elif command -v rustup >/dev/null 2>&1; then
    step "MSRV: cargo check with Rust $MSRV"
    rustup run "$MSRV" rustc --version >/dev/null 2>&1 ||
        rustup toolchain install "$MSRV" --profile minimal
    cargo "+$MSRV" check --workspace --all-targets --quiet
else
    step "error: rustc $have is not the MSRV $MSRV and there is no rustup to install it" >&2
    exit 1
fi


step "cargo test"
cargo test --workspace

step "the CLI with RocksDB built in"
cargo test -p warmcache --features rocksdb --test integration cli::

step "model-checked single-flight (shuttle)"
cargo test -p warmcache-core --features shuttle --lib single_flight::model_check

step "cargo package --workspace (every crate packages and builds from its package)"
# Cargo extracts the crates of its temporary packaging registry into CARGO_HOME once, and treats
# registry crates as immutable in the target directory, so while the version number stays the
# same a second run would verify the first run's sources and artifacts. Remove both first
# (that registry has no name, so its directories start with "-"; crates.io's are untouched);
# `cargo clean -p` goes by crate name and also drops this run's builds of the workspace crates,
# which is why this step comes last.
rm -rf "$CARGO_TARGET_DIR/package" "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/warmcache-*
cargo clean --quiet -p warmcache-core -p warmcache-memory -p warmcache-fs -p warmcache-redb \
    -p warmcache-rocksdb -p warmcache-s3 -p warmcache-wasmtime -p warmcache-conformance -p warmcache
cargo package --workspace --allow-dirty --quiet
