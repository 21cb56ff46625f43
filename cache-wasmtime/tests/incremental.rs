//! The incremental compilation store: a changed module reuses its unchanged functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use common::{call_answer, many_functions};
use warmcache_core::{Tier, Tiered};
use warmcache_redb::RedbBackend;
use warmcache_wasmtime::IncrementalCache;
use wasmtime::{Config, Engine, Module};

const FUNCTIONS: usize = 20;

fn engine_with(store: Arc<IncrementalCache>) -> Engine {
    let mut config = Config::new();
    config.enable_incremental_compilation(store).unwrap();
    // With parallel compilation, wasmtime 48 derives different incremental keys for some
    // functions on a module's first compile than on later ones (observed: 11 of 23 missed on an
    // identical recompile), which would make the counts below depend on scheduling.
    config.parallel_compilation(false);
    Engine::new(&config).unwrap()
}

#[test]
fn a_changed_function_is_compiled_and_the_others_are_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("incremental.redb");
    let redb = Arc::new(RedbBackend::builder(&path).open().unwrap());
    let store = Arc::new(IncrementalCache::new(
        Tiered::builder().tier(Tier::new(redb)).build(),
    ));
    let engine = engine_with(store.clone());

    let v1 = Module::new(&engine, many_functions(FUNCTIONS, 1)).unwrap();
    assert_eq!(call_answer(&engine, &v1), 42);
    let first = store.stats();
    assert_eq!((first.live_hits + first.tier_hits), 0);
    assert!(first.inserts >= FUNCTIONS as u64, "{first:?}");

    // One function body changed.
    let v2 = Module::new(&engine, many_functions(FUNCTIONS, 2)).unwrap();
    assert_eq!(call_answer(&engine, &v2), 42);
    let second = store.stats();
    let reused = (second.live_hits + second.tier_hits) - (first.live_hits + first.tier_hits);
    let compiled = second.misses - first.misses;
    // Every unchanged wasm function is reused; the changed one is compiled, plus at most two
    // pieces of glue code whose keys wasmtime does not keep stable between compiles.
    assert!(reused >= FUNCTIONS as u64 - 1, "{second:?}");
    assert!((1..=3).contains(&compiled), "{second:?}");
    assert_eq!(second.live_hits, reused);
}

#[test]
fn results_persist_in_the_tiers_and_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("incremental.redb");
    {
        let redb = Arc::new(RedbBackend::builder(&path).open().unwrap());
        let store = Arc::new(IncrementalCache::new(
            Tiered::builder().tier(Tier::new(redb)).build(),
        ));
        Module::new(&engine_with(store), many_functions(FUNCTIONS, 1)).unwrap();
    }
    // A new process: empty memory tier, same redb file.
    let redb = Arc::new(RedbBackend::builder(&path).open().unwrap());
    let store = Arc::new(IncrementalCache::new(
        Tiered::builder().tier(Tier::new(redb)).build(),
    ));
    let engine = engine_with(store.clone());
    let module = Module::new(&engine, many_functions(FUNCTIONS, 5)).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    let stats = store.stats();
    assert!(stats.tier_hits >= FUNCTIONS as u64 - 1, "{stats:?}");
    assert!((1..=3).contains(&stats.misses), "{stats:?}");
    assert_eq!(stats.tiers[0].corrupt, 0);
}
