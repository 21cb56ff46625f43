//! Two caches over one file-tier directory, as two processes would have them (each its own
//! backend, so its own lock files): a cold module is compiled once between them, through the
//! async API and through the sync one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use common::{call_answer, many_functions};
use warmcache_core::{Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_wasmtime::ModuleCache;
use wasmtime::Engine;

fn cache_on(dir: &std::path::Path) -> ModuleCache {
    let fs = Arc::new(FsBackend::open(dir).unwrap());
    ModuleCache::new(Tiered::builder().tier(Tier::new(fs)).build())
}

#[test]
fn two_caches_on_one_directory_compile_once_through_the_async_api() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (cache_on(dir.path()), cache_on(dir.path()));
    let engine = Engine::default();
    let wat = many_functions(3000, 1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ma, mb) = runtime.block_on(async {
        tokio::join!(
            a.get_or_compile_async(&engine, wat.as_bytes()),
            b.get_or_compile_async(&engine, wat.as_bytes())
        )
    });
    assert_eq!(call_answer(&engine, &ma.unwrap()), 42);
    assert_eq!(call_answer(&engine, &mb.unwrap()), 42);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.computes + sb.computes, 1, "{sa:?}\n{sb:?}");
    assert_eq!(sa.tier_hits + sb.tier_hits, 1, "{sa:?}\n{sb:?}");
}

#[test]
fn two_caches_on_one_directory_compile_once_through_the_sync_api() {
    let dir = tempfile::tempdir().unwrap();
    let caches = [cache_on(dir.path()), cache_on(dir.path())];
    let engine = Engine::default();
    let wat = many_functions(3000, 2);
    std::thread::scope(|s| {
        for cache in &caches {
            let (engine, wat) = (&engine, &wat);
            s.spawn(move || {
                let module = cache.get_or_compile(engine, wat.as_bytes()).unwrap();
                assert_eq!(call_answer(engine, &module), 42);
            });
        }
    });
    let compiles: u64 = caches.iter().map(|c| c.stats().computes).sum();
    assert_eq!(compiles, 1);
    let waited: u64 = caches.iter().map(|c| c.stats().coordinated).sum();
    let hits: u64 = caches.iter().map(|c| c.stats().tier_hits).sum();
    assert_eq!(hits, 1);
    assert!(waited <= 1);
}
