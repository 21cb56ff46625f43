//! The instance cache's contract: keys by content and linker identity, one build per key,
//! bounded, clear errors; and the pooling helper's derived limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Barrier};
use warmcache_wasmtime::Wasm;

use warmcache_wasmtime::{EngineKey, Error, ModuleCache, ModuleInstances, NamedLinker, PoolConfig};
use wasmtime::{Engine, Linker, Store};

const ANSWER: &str = r#"(module (func (export "answer") (result i32) i32.const 42))"#;
const IMPORTS: &str = r#"(module (import "host" "double" (func $d (param i32) (result i32)))
    (func (export "answer") (result i32) (call $d (i32.const 21))))"#;

fn answer(store: &mut Store<()>, instance: wasmtime::Instance) -> i32 {
    let f = instance
        .get_typed_func::<(), i32>(&mut *store, "answer")
        .unwrap();
    f.call(store, ()).unwrap()
}

fn host_linker(engine: &Engine, factor: i32, version: u64) -> NamedLinker<Linker<()>> {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap("host", "double", move |x: i32| x * factor)
        .unwrap();
    NamedLinker::new(linker, "host", version)
}

#[test]
fn concurrent_first_requests_build_one_pre_instantiation() {
    let engine = Engine::default();
    let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
    let linker = NamedLinker::new(Linker::new(&engine), "none", 1);
    let barrier = Barrier::new(16);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                barrier.wait();
                let mut store = Store::new(&engine, ());
                let instance = instances
                    .instantiate(&mut store, &linker, ANSWER.as_bytes())
                    .unwrap();
                assert_eq!(answer(&mut store, instance), 42);
            });
        }
    });
    let stats = instances.stats();
    assert_eq!(stats.computes, 1);
    assert_eq!(stats.live_hits + stats.waits, 15, "{stats:?}");
    assert_eq!(instances.artifacts().stats().computes, 1);
}

#[test]
fn the_linker_identity_is_part_of_the_key() {
    let engine = Engine::default();
    let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
    let doubling = host_linker(&engine, 2, 1);
    let tripling = host_linker(&engine, 3, 2);
    let run = |linker: &NamedLinker<Linker<()>>| {
        let mut store = Store::new(&engine, ());
        let instance = instances
            .instantiate(&mut store, linker, IMPORTS.as_bytes())
            .unwrap();
        answer(&mut store, instance)
    };
    assert_eq!(run(&doubling), 42);
    assert_eq!(run(&tripling), 63, "a new version is a new entry");
    assert_eq!(run(&doubling), 42);
    let stats = instances.stats();
    assert_eq!(
        (stats.computes, stats.live_hits, stats.live_entries),
        (2, 1, 2)
    );
    assert_eq!(
        instances.artifacts().stats().computes,
        1,
        "one artifact for both"
    );
}

#[test]
fn a_missing_import_names_the_linker_and_is_not_kept() {
    let engine = Engine::default();
    let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
    let empty = NamedLinker::new(Linker::new(&engine), "empty", 3);
    let Err(err) = instances.instance_pre(&empty, IMPORTS.as_bytes()) else {
        panic!("linked without the import")
    };
    assert!(matches!(err, Error::Link { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("empty v3") && message.contains("host::double"),
        "{message}"
    );
    assert_eq!(instances.stats().live_entries, 0);
    // The artifact was compiled and kept; the linker's failure cost no second compile.
    instances
        .instance_pre(&host_linker(&engine, 2, 1), IMPORTS.as_bytes())
        .unwrap();
    assert_eq!(instances.artifacts().stats().computes, 1);
}

#[test]
fn the_cache_is_bounded_and_evicted_entries_are_rebuilt_without_compiling() {
    let engine = Engine::default();
    let instances = ModuleInstances::<()>::with_capacity(ModuleCache::builder().build(), 2);
    let linker = NamedLinker::new(Linker::new(&engine), "none", 1);
    let modules: Vec<String> = (0..6)
        .map(|i| format!(r#"(module (func (export "answer") (result i32) i32.const {i}))"#))
        .collect();
    for _ in 0..2 {
        for wat in &modules {
            instances.instance_pre(&linker, wat.as_bytes()).unwrap();
            assert!(
                instances.stats().live_entries <= 2,
                "{:?}",
                instances.stats()
            );
        }
    }
    let stats = instances.stats();
    assert!(
        stats.computes > 6,
        "evicted entries are built again: {stats:?}"
    );
    assert_eq!(instances.artifacts().stats().computes, 6);
}

#[test]
fn hashed_requests_load_the_wasm_only_to_compile_it() {
    let engine = Engine::default();
    let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
    let linker = NamedLinker::new(Linker::new(&engine), "none", 1);
    let hash = warmcache_wasmtime::ContentHash::of(ANSWER.as_bytes());
    let mut loads = 0;
    for _ in 0..3 {
        let pre = instances
            .instance_pre(
                &linker,
                Wasm::hashed(hash, || {
                    loads += 1;
                    Ok::<_, std::io::Error>(ANSWER.as_bytes().to_vec())
                }),
            )
            .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = pre.instantiate(&mut store).unwrap();
        assert_eq!(answer(&mut store, instance), 42);
    }
    assert_eq!(loads, 1);
    let wrong = warmcache_wasmtime::ContentHash::of(b"something else");
    let Err(err) = instances.instance_pre(
        &linker,
        Wasm::hashed(wrong, || Ok::<_, std::io::Error>(ANSWER.as_bytes())),
    ) else {
        panic!("bytes of another hash accepted")
    };
    assert!(matches!(err, Error::HashMismatch { .. }), "{err:?}");
}

#[test]
fn a_full_pool_is_a_clear_error_and_a_dropped_store_frees_its_slot() {
    let mut pool = PoolConfig::new();
    pool.live_instances(2).module(ANSWER.as_bytes()).unwrap();
    let engine = pool.engine().unwrap();
    let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
    let linker = NamedLinker::new(Linker::new(&engine), "none", 1);
    let mut held: Vec<Store<()>> = (0..2)
        .map(|_| {
            let mut store = Store::new(&engine, ());
            instances
                .instantiate(&mut store, &linker, ANSWER.as_bytes())
                .unwrap();
            store
        })
        .collect();
    let mut store = Store::new(&engine, ());
    let err = instances
        .instantiate(&mut store, &linker, ANSWER.as_bytes())
        .unwrap_err();
    assert!(matches!(err, Error::Instantiate { .. }), "{err:?}");
    assert!(err.to_string().contains("limit"), "{err}");
    held.pop();
    let instance = instances
        .instantiate(&mut store, &linker, ANSWER.as_bytes())
        .unwrap();
    assert_eq!(answer(&mut store, instance), 42);
}

#[test]
fn a_store_of_another_engine_is_an_error_not_a_panic() {
    let engine = Engine::default();
    let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
    let linker = NamedLinker::new(Linker::new(&engine), "none", 1);
    let mut store = Store::new(&Engine::default(), ());
    let err = instances
        .instantiate(&mut store, &linker, ANSWER.as_bytes())
        .unwrap_err();
    assert!(matches!(err, Error::Instantiate { .. }), "{err:?}");
}

#[test]
fn pooling_limits_are_derived_from_the_modules() {
    // Two memories, a table of 30,000 elements and 70,000 globals (over 1 MiB of instance
    // context): each beyond a default pool.
    let globals: String = (0..70_000).map(|_| "(global i32 (i32.const 0))").collect();
    let big = format!(
        r#"(module (memory 1) (memory 2) (table 30000 funcref) {globals}
            (func (export "answer") (result i32) i32.const 42))"#
    );
    let default_pool = {
        let mut config = wasmtime::Config::new();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
        Engine::new(&config).unwrap()
    };
    let load = |engine: &Engine| {
        let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
        let linker = NamedLinker::new(Linker::new(engine), "none", 1);
        let mut store = Store::new(engine, ());
        let instance = instances.instantiate(&mut store, &linker, big.as_bytes())?;
        Ok::<_, Error>(answer(&mut store, instance))
    };
    assert!(
        load(&default_pool).is_err(),
        "a default pool cannot hold it"
    );
    let mut pool = PoolConfig::new();
    pool.live_instances(4).module(big.as_bytes()).unwrap();
    assert_eq!(load(&pool.engine().unwrap()).unwrap(), 42);
}

#[test]
fn growth_without_a_declared_maximum_stops_at_the_memory_limit() {
    let wat = r#"(module (memory 1)
        (func (export "grow") (result i32) (memory.grow (i32.const 1))))"#;
    let mut pool = PoolConfig::new();
    pool.live_instances(2)
        .memory_limit(2 << 16)
        .module(wat.as_bytes())
        .unwrap();
    let engine = pool.engine().unwrap();
    let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
    let linker = NamedLinker::new(Linker::new(&engine), "none", 1);
    let mut store = Store::new(&engine, ());
    let instance = instances
        .instantiate(&mut store, &linker, wat.as_bytes())
        .unwrap();
    let grow = instance
        .get_typed_func::<(), i32>(&mut store, "grow")
        .unwrap();
    assert_eq!(
        grow.call(&mut store, ()).unwrap(),
        1,
        "to 2 pages: the old size"
    );
    assert_eq!(
        grow.call(&mut store, ()).unwrap(),
        -1,
        "beyond the limit: refused"
    );
}

#[test]
fn a_memory_larger_than_the_limit_from_the_start_is_refused_by_name() {
    let mut pool = PoolConfig::new();
    pool.memory_limit(1 << 16);
    let err = pool.module(br#"(module (memory 4))"#).unwrap_err();
    assert!(matches!(err, Error::Inspect { .. }), "{err:?}");
    assert!(err.to_string().contains("memory_limit"), "{err}");
    let err = PoolConfig::new()
        .module(b"\0asm\x01\0\0\0\x05\xff")
        .unwrap_err();
    assert!(matches!(err, Error::Inspect { .. }), "{err:?}");
}

#[test]
fn the_pooling_helper_does_not_change_cache_keys() {
    let mut pool = PoolConfig::new();
    pool.live_instances(4).module(ANSWER.as_bytes()).unwrap();
    assert_eq!(
        EngineKey::of(&pool.engine().unwrap()),
        EngineKey::of(&Engine::default())
    );
}

#[test]
fn instances_from_one_cache_can_be_shared_across_threads() {
    fn assert_send_sync<X: Send + Sync>(_: &X) {}
    let instances = Arc::new(ModuleInstances::<()>::new(ModuleCache::builder().build()));
    assert_send_sync(&instances);
}
