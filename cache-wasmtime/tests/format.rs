//! A module stored by the previous release (envelope format version 1, compile time in the
//! producer string) still verifies and loads: `tests/fixtures/v1-module-answer.bin` was written
//! by warmcache 0.1.0 for `common::ANSWER` under wasmtime 48.0.8's default engine on
//! x86_64-linux, and is committed as it is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::common;
use warmcache_wasmtime::ContentHash;

use std::sync::Arc;

use common::{ANSWER, call_answer};
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, Tier, Tiered, inspect};
use warmcache_memory::MemoryBackend;
use warmcache_wasmtime::ModuleCache;
use wasmtime::Engine;

#[test]
fn a_version_1_module_entry_loads_without_compiling() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1-module-answer.bin");
    let stored = Bytes::from(std::fs::read(path).unwrap());
    let meta = inspect(&stored).unwrap();
    assert_eq!(meta.version, 1);
    assert_eq!(
        meta.producer,
        "wasmtime 48.0.8 x86_64-linux compile_ms=4321"
    );

    let memory = Arc::new(MemoryBackend::with_capacity(64 << 20).unwrap());
    let cache = ModuleCache::new(Tiered::builder().tier(Tier::new(memory.clone())).build());
    let engine = Engine::default();
    let key = cache.key_for(&engine, &ContentHash::of(ANSWER.as_bytes()));
    if key != meta.key {
        // The key covers the host and wasmtime's compatibility hash: another host or build
        // derives another key, and the fixture does not apply.
        eprintln!("skipped: the fixture was written for x86_64-linux with wasmtime 48.0.8");
        return;
    }
    futures::executor::block_on(memory.put(&key, stored)).unwrap();
    let module = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    let stats = cache.stats();
    assert_eq!((stats.computes, stats.tier_hits, stats.decodes), (0, 1, 1));
    // Version 1 recorded no compile time as a field; it is not parsed out of the producer.
    assert_eq!(stats.compute_saved_ms, 0.0);
}
