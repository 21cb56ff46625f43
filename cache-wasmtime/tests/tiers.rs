//! Warm starts through real tiers: mapped files, redb bytes, a second engine, async callers,
//! caller extras, and the stats that report them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use warmcache_wasmtime::Wasm;

use std::sync::Arc;

use common::{ANSWER, call_answer, many_functions};
use warmcache_core::{Compression, Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_redb::RedbBackend;
use warmcache_wasmtime::{ComponentCache, ContentHash, Error, ModuleCache};
use wasmtime::Engine;

fn fs_cache(dir: &std::path::Path) -> ModuleCache {
    let files = Arc::new(FsBackend::builder(dir).open().unwrap());
    ModuleCache::new(Tiered::builder().tier(Tier::new(files)).build())
}

#[test]
fn warm_start_from_the_file_tier_maps_the_verified_file() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let wasm = many_functions(50, 1);
    {
        let cache = fs_cache(dir.path());
        cache.get_or_compile(&engine, wasm.as_bytes()).unwrap();
    }
    // A new process, in effect: nothing in memory.
    let cache = fs_cache(dir.path());
    let module = cache.get_or_compile(&engine, wasm.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    let stats = cache.stats();
    assert_eq!(
        (stats.computes, stats.tier_hits, stats.file_loads),
        (0, 1, 1)
    );
    assert_eq!(stats.decodes, 1);
    assert!(stats.load_ms > 0.0);
}

#[test]
fn a_damaged_file_is_refused_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let cache = fs_cache(dir.path());
    cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    let key = cache.key_for(&engine, &ContentHash::of(ANSWER.as_bytes()));
    let hex = key.to_hex();
    let path = dir.path().join("entries").join(&hex[..2]).join(&hex);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    let cache = fs_cache(dir.path());
    let module = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    let stats = cache.stats();
    assert_eq!((stats.corrupt(), stats.decodes, stats.computes), (1, 0, 1));
    assert_ne!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn components_load_from_the_file_tier() {
    let dir = tempfile::tempdir().unwrap();
    let files = Arc::new(FsBackend::builder(dir.path()).open().unwrap());
    let tiers = Tiered::builder().tier(Tier::new(files)).build();
    let cache = ComponentCache::new(tiers);
    let engine = Engine::default();
    let component = r#"(component (core module (func (export "f"))))"#;
    cache.get_or_compile(&engine, component.as_bytes()).unwrap();
    cache.clear_live();
    cache.get_or_compile(&engine, component.as_bytes()).unwrap();
    let stats = cache.stats();
    assert_eq!(
        (stats.computes, stats.tier_hits, stats.file_loads),
        (1, 1, 1)
    );
}

#[test]
fn a_second_engine_with_the_same_settings_loads_its_own_copy() {
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(
        RedbBackend::builder(dir.path().join("cache.redb"))
            .open()
            .unwrap(),
    );
    let cache = ModuleCache::new(Tiered::builder().tier(Tier::new(redb)).build());
    let first = Engine::default();
    let second = Engine::default();
    let a = cache.get_or_compile(&first, ANSWER.as_bytes()).unwrap();
    let b = cache.get_or_compile(&second, ANSWER.as_bytes()).unwrap();
    assert!(Engine::same(a.engine(), &first));
    assert!(Engine::same(b.engine(), &second));
    assert_eq!(call_answer(&second, &b), 42);
    let stats = cache.stats();
    assert_eq!(
        (stats.computes, stats.tier_hits, stats.file_loads),
        (1, 1, 0)
    );
    // Each engine now hits in process.
    cache.get_or_compile(&second, ANSWER.as_bytes()).unwrap();
    assert_eq!(cache.stats().live_hits, 1);
}

#[test]
fn compile_time_saved_is_reported_from_the_stored_entry() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let wasm = many_functions(50, 3);
    let compile_ms = {
        let cache = fs_cache(dir.path());
        cache.get_or_compile(&engine, wasm.as_bytes()).unwrap();
        cache.stats().compute_ms
    };
    let cache = fs_cache(dir.path());
    cache.get_or_compile(&engine, wasm.as_bytes()).unwrap();
    // The entry records the compile time in whole milliseconds; a hit reports exactly that.
    assert_eq!(cache.stats().compute_saved_ms, compile_ms.floor());

    // Whatever an entry records is what a hit reports.
    let key = cache.key_for(&engine, &ContentHash::of(ANSWER.as_bytes()));
    let artifact = engine.precompile_module(ANSWER.as_bytes()).unwrap();
    let kind = warmcache_wasmtime::ArtifactKind::Module.envelope_kind();
    let origin = warmcache_core::Origin::new(kind, "elsewhere").compute_ms(4321);
    futures::executor::block_on(cache.tiers().put(&key, &origin, &artifact));
    let before = cache.stats().compute_saved_ms;
    cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(cache.stats().compute_saved_ms - before, 4321.0);
}

#[test]
fn compressed_tiers_load_from_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let files = Arc::new(FsBackend::builder(dir.path()).open().unwrap());
    let tiers = Tiered::builder()
        .tier(Tier::new(files).compression(Compression::Zstd { level: 3 }))
        .build();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    let wasm = many_functions(50, 1);
    cache.get_or_compile(&engine, wasm.as_bytes()).unwrap();
    cache.clear_live();
    let module = cache.get_or_compile(&engine, wasm.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    let stats = cache.stats();
    assert_eq!((stats.tier_hits, stats.file_loads), (1, 0));
}

#[test]
fn extras_are_part_of_the_key() {
    fn with_pages(wasm: &[u8], pages: &u32) -> Result<Vec<u8>, std::str::Utf8Error> {
        let text = std::str::from_utf8(wasm)?;
        Ok(text
            .replace("(memory 1)", &format!("(memory {pages})"))
            .into_bytes())
    }
    fn pages(engine: &Engine, module: &wasmtime::Module) -> u64 {
        let mut store = wasmtime::Store::new(engine, ());
        let instance = wasmtime::Instance::new(&mut store, module, &[]).unwrap();
        instance
            .get_memory(&mut store, "memory")
            .unwrap()
            .size(&store)
    }
    let (_memory, tiers) = common::memory_tiers();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    let wasm = br#"(module (memory 1) (export "memory" (memory 0)))"#;
    let two = cache
        .get_or_compile(&engine, Wasm::from(wasm).prepared(&2u32, with_pages))
        .unwrap();
    let three = cache
        .get_or_compile(&engine, Wasm::from(wasm).prepared(&3u32, with_pages))
        .unwrap();
    assert_eq!((pages(&engine, &two), pages(&engine, &three)), (2, 3));
    cache.clear_live();
    let again = cache
        .get_or_compile(&engine, Wasm::from(wasm).prepared(&2u32, with_pages))
        .unwrap();
    assert_eq!(pages(&engine, &again), 2);
    let plain = cache.get_or_compile(&engine, wasm).unwrap();
    assert_eq!(pages(&engine, &plain), 1);
    let stats = cache.stats();
    assert_eq!((stats.computes, stats.tier_hits), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callers_share_one_compile() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(fs_cache(dir.path()));
    let engine = Engine::default();
    let wasm = Arc::new(many_functions(200, 9).into_bytes());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, engine, wasm) = (cache.clone(), engine.clone(), wasm.clone());
            tokio::spawn(async move { cache.get_or_compile_async(&engine, wasm.as_slice()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(call_answer(&engine, &task.await.unwrap().unwrap()), 42);
    }
    assert_eq!(cache.stats().computes, 1);

    cache.clear_live();
    let content = ContentHash::of(&wasm);
    let wasm_for_load = wasm.clone();
    let module = cache
        .get_or_compile_async(
            &engine,
            Wasm::hashed_async(content, || async move {
                Ok::<_, std::io::Error>(wasm_for_load.to_vec())
            }),
        )
        .await
        .unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    let stats = cache.stats();
    assert_eq!((stats.computes, stats.file_loads), (1, 1));

    let err = cache
        .get_or_compile_async(
            &engine,
            Wasm::hashed_async(ContentHash::of(b"other"), || async {
                Ok::<_, std::io::Error>(b"(module)".to_vec())
            }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
}

#[test]
fn the_in_process_tier_can_be_bounded_by_code_size() {
    let engine = Engine::default();
    let small = ANSWER.as_bytes();
    let large = many_functions(400, 1);
    let cache = ModuleCache::builder().live_bytes(64 << 10).build();
    let large_module = cache.get_or_compile(&engine, large.as_bytes()).unwrap();
    assert!(
        large_module.image_range().end.addr() - large_module.image_range().start.addr() > 64 << 10,
        "the test needs a module over the bound"
    );
    cache.get_or_compile(&engine, small).unwrap();
    cache.get_or_compile(&engine, small).unwrap();
    cache.get_or_compile(&engine, large.as_bytes()).unwrap();
    let stats = cache.stats();
    // The small module is kept; the large one is over the bound and compiled again.
    assert_eq!(
        (stats.live_hits, stats.computes, stats.live_entries),
        (1, 3, 1)
    );
}

/// `pin` compiles what is missing and pins it in the file tier (and only there: the memory tier
/// keeps no pins); eviction then leaves it; `unpin` lets it go.
#[test]
fn a_pinned_artifact_stays_through_eviction_until_unpinned() {
    let dir = tempfile::tempdir().unwrap();
    let files = Arc::new(FsBackend::builder(dir.path()).open().unwrap());
    let tiers = Tiered::builder()
        .tier(Tier::new(Arc::new(
            warmcache_memory::MemoryBackend::with_capacity(16 << 20).unwrap(),
        )))
        .tier(Tier::new(files.clone()))
        .build();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    let pinned = cache.pin(&engine, ANSWER.as_bytes(), true).unwrap();
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    assert!(pinned[0].0.ends_with("fs"), "{pinned:?}");
    assert!(matches!(pinned[0].1, Ok(true)), "{pinned:?}");
    assert_eq!(cache.stats().computes, 1);
    futures::executor::block_on(warmcache_core::Backend::shrink_to(&files, 0)).unwrap();
    let key = cache.key_for(&engine, &ContentHash::of(ANSWER.as_bytes()));
    assert!(futures::executor::block_on(warmcache_core::Backend::contains(&files, &key)).unwrap());
    let unpinned = cache.pin(&engine, ANSWER.as_bytes(), false).unwrap();
    assert!(matches!(unpinned[0].1, Ok(true)), "{unpinned:?}");
    futures::executor::block_on(warmcache_core::Backend::shrink_to(&files, 0)).unwrap();
    assert!(!futures::executor::block_on(warmcache_core::Backend::contains(&files, &key)).unwrap());
    // Unpinning what is not there changes nothing.
    let again = cache.pin(&engine, ANSWER.as_bytes(), false).unwrap();
    assert!(matches!(again[0].1, Ok(false)), "{again:?}");
}
