//! No state leaks between calls through the instance cache: every call observes exactly the
//! pristine state of a new instance (memory inside and beyond the data segments, grown memory,
//! mutable globals, table slots, dropped passive segments), from many threads, for modules and
//! components, with the pooling helper's engine and wasmtime's default allocator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use warmcache_core::{Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_wasmtime::{
    ComponentCache, ComponentInstances, ModuleCache, ModuleInstances, NamedLinker, PoolConfig,
};
use wasmtime::{Engine, Instance, Module, Store};

const CALLS: usize = 1000;
const THREADS: usize = 8;

/// `digest` folds every byte of memory, the memory's size, both mutable globals, the table's
/// size and whether slot 1 is set into one number; `call` returns the digest of the state it
/// found on entry and then changes all of it.
const DIGEST: &str = r#"
  (func $digest (result i64) (local $i i32) (local $x i64)
    (local.set $x (i64.const 1469598103934665603))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.mul (memory.size) (i32.const 65536))))
      (local.set $x (i64.mul (i64.xor (local.get $x) (i64.load (local.get $i)))
                             (i64.const 1099511628211)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $next)))
    (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 31)) (i64.extend_i32_u (memory.size))))
    (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 31)) (i64.extend_i32_u (global.get $sp))))
    (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 31)) (global.get $count)))
    (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 31)) (i64.extend_i32_u (table.size $t))))
    (i64.add (i64.mul (local.get $x) (i64.const 31))
             (i64.extend_i32_u (ref.is_null (table.get $t (i32.const 1))))))
  (func $tick (result i32) i32.const 1)
  (func $mutate
    (i32.store8 (i32.const 20) (i32.const 255))          ;; inside the data segment
    (i64.store (i32.const 40000) (i64.const -1))          ;; beyond it
    (drop (memory.grow (i32.const 1)))
    (i64.store (i32.const 70000) (i64.const 42))          ;; in the grown page
    (global.set $sp (i32.sub (global.get $sp) (i32.const 1024)))
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (table.set $t (i32.const 1) (ref.func $tick)))
  (func (export "call") (result i64) (local $d i64)
    (local.set $d (call $digest))
    (call $mutate)
    (local.get $d))
"#;

const STATE_HEAD: &str = r#"
  (memory 1)
  (global $sp (mut i32) (i32.const 65536))
  (global $count (mut i64) (i64.const 7))
  (table $t 2 funcref)
  (elem (i32.const 0) $tick)
"#;

/// Data segments inside memory, and writes inside and beyond them.
fn with_data() -> String {
    format!(
        "(module {STATE_HEAD} (data (i32.const 16) \"pristine data segment\") \
         (data (i32.const 30000) \"another one\") {DIGEST})"
    )
}

/// A start function that writes memory (after the data segments are in place).
fn with_start() -> String {
    format!(
        "(module {STATE_HEAD} (data (i32.const 16) \"pristine data segment\") {DIGEST} \
         (func $init (i64.store (i32.const 50000) (i64.const 1234)) \
           (global.set $count (i64.const 99))) (start $init))"
    )
}

/// No data segments: a zeroed memory.
fn without_data() -> String {
    format!("(module {STATE_HEAD} {DIGEST})")
}

/// A passive segment copied in and dropped by every call: a reused instance would trap on
/// the second `memory.init`.
fn with_passive() -> String {
    let digest = DIGEST.replace(
        "(call $mutate)",
        "(memory.init $p (i32.const 500) (i32.const 0) (i32.const 14)) (data.drop $p) (call $mutate)",
    );
    format!("(module {STATE_HEAD} (data $p \"passive bytes!\") {digest})")
}

/// The digest of the pristine state, from a new instance made without any cache; asserts that
/// a second call on the same instance sees different state (so a leak would be seen).
fn pristine(wat: &str) -> i64 {
    let engine = Engine::default();
    let module = Module::new(&engine, wat).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let call = instance
        .get_typed_func::<(), i64>(&mut store, "call")
        .unwrap();
    let first = call.call(&mut store, ()).unwrap();
    if let Ok(second) = call.call(&mut store, ()) {
        assert_ne!(first, second, "the test module must see its own changes");
    }
    first
}

fn file_tiers(dir: &std::path::Path) -> Tiered {
    let files = Arc::new(FsBackend::builder(dir).open().unwrap());
    Tiered::builder().tier(Tier::new(files)).build()
}

/// `CALLS` calls from `THREADS` threads through one instance cache over a file tier, each in a
/// new store; every digest must be the pristine one.
fn calls_see_pristine_state(engine: &Engine, wat: &str) {
    let expected = pristine(wat);
    let dir = tempfile::tempdir().unwrap();
    // A first cache compiles into the file tier; the tested one maps the file (the warm path).
    ModuleCache::new(file_tiers(dir.path()))
        .get_or_compile(engine, wat.as_bytes())
        .unwrap();
    let instances = ModuleInstances::<()>::new(ModuleCache::new(file_tiers(dir.path())));
    let linker = NamedLinker::new(wasmtime::Linker::new(engine), "none", 1);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..CALLS / THREADS {
                    let mut store = Store::new(engine, ());
                    let instance = instances
                        .instantiate(&mut store, &linker, wat.as_bytes())
                        .unwrap();
                    let call = instance
                        .get_typed_func::<(), i64>(&mut store, "call")
                        .unwrap();
                    assert_eq!(call.call(&mut store, ()).unwrap(), expected);
                }
            });
        }
    });
    let stats = instances.stats();
    assert_eq!(instances.instantiations(), CALLS as u64);
    assert_eq!(stats.computes, 1, "one pre-instantiation for every call");
    let artifacts = instances.artifacts().stats();
    assert_eq!((artifacts.computes, artifacts.file_loads), (0, 1));
}

fn pooled(wat: &str) -> Engine {
    pool_for(wat, false)
}

#[test]
fn data_segments_and_everything_written_beyond_them_are_pristine_with_pooling() {
    calls_see_pristine_state(&pooled(&with_data()), &with_data());
}

#[test]
fn data_segments_and_everything_written_beyond_them_are_pristine_with_the_default_allocator() {
    calls_see_pristine_state(&Engine::default(), &with_data());
}

#[test]
fn a_start_function_that_writes_memory_runs_on_pristine_state() {
    calls_see_pristine_state(&pooled(&with_start()), &with_start());
}

#[test]
fn a_module_without_data_segments_starts_zeroed() {
    calls_see_pristine_state(&pooled(&without_data()), &without_data());
}

#[test]
fn passive_segments_are_not_dropped_for_the_next_call() {
    calls_see_pristine_state(&pooled(&with_passive()), &with_passive());
}

/// An engine from the pooling helper for `wat`, with fiber stacks for async calls.
fn async_pooled(wat: &str) -> Engine {
    pool_for(wat, true)
}

fn pool_for(wat: &str, async_calls: bool) -> Engine {
    let mut pool = PoolConfig::new();
    pool.live_instances(THREADS as u32)
        .async_calls(async_calls)
        .module(wat.as_bytes())
        .unwrap();
    pool.engine().unwrap()
}

/// `CALLS` runs of `call`, from `THREADS` Tokio tasks on 4 worker threads.
fn on_tokio<F, Fut>(call: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..THREADS)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    for _ in 0..CALLS / THREADS {
                        call().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn async_instantiation_sees_pristine_state() {
    let wat: Arc<str> = with_data().into();
    let expected = pristine(&wat);
    let engine = async_pooled(&wat);
    let instances = Arc::new(ModuleInstances::<()>::new(ModuleCache::builder().build()));
    let linker = Arc::new(NamedLinker::new(wasmtime::Linker::new(&engine), "none", 1));
    let cache = instances.clone();
    on_tokio(move || {
        let (engine, instances, linker, wat) =
            (engine.clone(), cache.clone(), linker.clone(), wat.clone());
        async move {
            let mut store = Store::new(&engine, ());
            let instance = instances
                .instantiate_async(&mut store, &linker, wat.as_bytes())
                .await
                .unwrap();
            let call = instance
                .get_typed_func::<(), i64>(&mut store, "call")
                .unwrap();
            assert_eq!(call.call_async(&mut store, ()).await.unwrap(), expected);
        }
    });
    let stats = instances.stats();
    assert_eq!(
        (instances.instantiations(), stats.computes),
        (CALLS as u64, 1)
    );
}

/// The state module wrapped in a component exporting `call: func() -> s64`.
fn component(core: &str) -> String {
    let inner = core.trim_start_matches("(module");
    format!(
        "(component (core module $m {inner} (core instance $i (instantiate $m)) \
         (func (export \"call\") (result s64) (canon lift (core func $i \"call\"))))"
    )
}

#[test]
fn a_component_instantiated_async_sees_pristine_state() {
    let expected = pristine(&with_data());
    let wat: Arc<str> = component(&with_data()).into();
    let engine = async_pooled(&wat);
    let instances = Arc::new(ComponentInstances::<()>::new(
        ComponentCache::builder().build(),
    ));
    let linker = Arc::new(NamedLinker::new(
        wasmtime::component::Linker::new(&engine),
        "none",
        1,
    ));
    let cache = instances.clone();
    on_tokio(move || {
        let (engine, instances, linker, wat) =
            (engine.clone(), cache.clone(), linker.clone(), wat.clone());
        async move {
            let mut store = Store::new(&engine, ());
            let instance = instances
                .instantiate_async(&mut store, &linker, wat.as_bytes())
                .await
                .unwrap();
            let call = instance
                .get_typed_func::<(), (i64,)>(&mut store, "call")
                .unwrap();
            let (digest,) = call.call_async(&mut store, ()).await.unwrap();
            assert_eq!(digest, expected);
        }
    });
    let stats = instances.stats();
    assert_eq!(
        (instances.instantiations(), stats.computes),
        (CALLS as u64, 1)
    );
}

#[test]
fn a_component_sees_pristine_state() {
    let expected = pristine(&with_data());
    let wat = component(&with_data());
    let mut pool = PoolConfig::new();
    pool.live_instances(THREADS as u32)
        .module(wat.as_bytes())
        .unwrap();
    let engine = pool.engine().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let instances = ComponentInstances::<()>::new(ComponentCache::new(file_tiers(dir.path())));
    let linker = NamedLinker::new(wasmtime::component::Linker::new(&engine), "none", 1);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..CALLS / THREADS {
                    let mut store = Store::new(&engine, ());
                    let instance = instances
                        .instantiate(&mut store, &linker, wat.as_bytes())
                        .unwrap();
                    let call = instance
                        .get_typed_func::<(), (i64,)>(&mut store, "call")
                        .unwrap();
                    let (digest,) = call.call(&mut store, ()).unwrap();
                    assert_eq!(digest, expected);
                }
            });
        }
    });
    let stats = instances.stats();
    assert_eq!(
        (instances.instantiations(), stats.computes),
        (CALLS as u64, 1)
    );
    assert_eq!(instances.artifacts().stats().computes, 1);
}
