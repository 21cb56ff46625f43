//! Fresh instances per call: the instance cache on the pooling helper's engine over a mapped
//! file tier entry, against wasmtime's own pooling setup, the default allocator (as wasmtime 48
//! ships it, with copy-on-write images, and with eager memory initialization, the setting
//! wasmtime's "2 ms" figure refers to), and the unsafe baseline of one reused instance.
//!
//! Run with `cargo bench -p warmcache-wasmtime --bench instances`. Modules: a minimal one, and
//! `icepll`, `boolector`, `resvg` and `yosys` from `$WARMCACHE_CORPUS/set` (default
//! `~/.cache/warmcache-corpus/set`, filled by `scripts/fetch-corpus.sh`) when present. Imports
//! are defined as traps; the corpus modules are WASI commands whose first call would run the
//! program, so for them `instantiate` is timed without a call, and `instantiate_and_call`
//! times the minimal module with a call that writes memory and a global.
//!
//! Before the timings it prints resident memory per live instance: 100 instances of the largest
//! module, each writing 16 pages, measured from `/proc/self/smaps_rollup`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;

#[path = "../tests/common/corpus.rs"]
mod corpus;

use criterion::{BenchmarkId, Criterion};
use futures::executor::block_on;
use warmcache_core::{Origin, Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_wasmtime::{
    ArtifactKind, ContentHash, ModuleCache, ModuleInstances, NamedLinker, PoolConfig, Wasm,
};
use wasmtime::{Config, Engine, Instance, InstancePre, Linker, Module, Store};

const MINIMAL: &str = r#"(module (memory (export "memory") 1) (global $g (mut i32) (i32.const 0))
    (data (i32.const 64) "minimal")
    (func (export "call") (result i32)
        (i32.store (i32.const 128) (i32.const 7))
        (global.set $g (i32.add (global.get $g) (i32.const 1)))
        (i32.load8_u (i32.const 64))))"#;

fn modules() -> Vec<(String, Vec<u8>)> {
    let mut modules = vec![("minimal".to_owned(), wat::parse_str(MINIMAL).unwrap())];
    modules.extend(corpus::modules(&["icepll", "boolector", "resvg", "yosys"]));
    modules
}

/// One module prepared every way that is measured.
struct Subject {
    name: String,
    /// The instance cache's pre-instantiation, from a mapped file tier entry, pooling engine.
    cached: InstancePre<()>,
    instances: ModuleInstances<()>,
    linker: NamedLinker<Linker<()>>,
    content: ContentHash,
    pooled: Engine,
    /// wasmtime's own pooling setup: `Module::deserialize_file` and `instantiate_pre`.
    wasmtime_pre: InstancePre<()>,
    default_engine: Engine,
    default_module: Module,
    default_linker: Linker<()>,
    eager_engine: Engine,
    eager_module: Module,
    eager_linker: Linker<()>,
    _dir: tempfile::TempDir,
}

fn traps(engine: &Engine, module: &Module) -> Linker<()> {
    let mut linker = Linker::new(engine);
    linker.define_unknown_imports_as_traps(module).unwrap();
    linker
}

#[allow(unsafe_code)]
fn subject(name: &str, wasm: &[u8]) -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let content = ContentHash::of(wasm);
    let mut pool = PoolConfig::new();
    pool.live_instances(128).module(wasm).unwrap();
    let pooled = pool.engine().unwrap();
    let artifact = pooled.precompile_module(wasm).unwrap();

    let files = Arc::new(FsBackend::builder(dir.path().join("tier")).open().unwrap());
    let instances = ModuleInstances::<()>::new(ModuleCache::new(
        Tiered::builder().tier(Tier::new(files)).build(),
    ));
    let key = instances.artifacts().key_for(&pooled, &content);
    let origin = Origin::new(ArtifactKind::Module.envelope_kind(), "bench");
    block_on(instances.artifacts().tiers().put(&key, &origin, &artifact));
    let stored = || -> std::io::Result<Vec<u8>> { Err(std::io::Error::other("not stored")) };
    let module = instances
        .artifacts()
        .get_or_compile(&pooled, Wasm::hashed(content, stored))
        .unwrap();
    let linker = NamedLinker::new(traps(&pooled, &module), "traps", 1);
    let cached = instances
        .instance_pre(&linker, Wasm::hashed(content, stored))
        .unwrap();
    assert_eq!(
        instances.artifacts().stats().file_loads,
        1,
        "{name}: mapped from the tier"
    );

    let raw = dir.path().join("raw.cwasm");
    std::fs::write(&raw, &artifact).unwrap();
    // SAFETY: written just above by `precompile_module`.
    let wasmtime_module = unsafe { Module::deserialize_file(&pooled, &raw) }.unwrap();
    let wasmtime_pre = traps(&pooled, &wasmtime_module)
        .instantiate_pre(&wasmtime_module)
        .unwrap();

    let default_engine = Engine::default();
    // SAFETY: produced by `precompile_module` of an engine with the same settings.
    let default_module = unsafe { Module::deserialize(&default_engine, &artifact) }.unwrap();
    let default_linker = traps(&default_engine, &default_module);

    let mut eager = Config::new();
    eager.memory_init_cow(false);
    let eager_engine = Engine::new(&eager).unwrap();
    let eager_module = Module::new(&eager_engine, wasm).unwrap();
    let eager_linker = traps(&eager_engine, &eager_module);
    Subject {
        name: name.to_owned(),
        cached,
        instances,
        linker,
        content,
        pooled,
        wasmtime_pre,
        default_engine,
        default_module,
        default_linker,
        eager_engine,
        eager_module,
        eager_linker,
        _dir: dir,
    }
}

fn call(store: &mut Store<()>, instance: Instance) -> i32 {
    let f = instance
        .get_typed_func::<(), i32>(&mut *store, "call")
        .unwrap();
    f.call(store, ()).unwrap()
}

fn bench_instantiate(c: &mut Criterion, subjects: &[Subject]) {
    let mut g = c.benchmark_group("instantiate");
    for s in subjects {
        g.bench_function(
            BenchmarkId::new(&s.name, "instance_cache_pooling_file"),
            |b| {
                b.iter(|| {
                    let mut store = Store::new(&s.pooled, ());
                    let pre = s
                        .instances
                        .instance_pre(
                            &s.linker,
                            Wasm::hashed(s.content, || -> std::io::Result<Vec<u8>> {
                                unreachable!()
                            }),
                        )
                        .unwrap();
                    pre.instantiate(&mut store).unwrap();
                })
            },
        );
        g.bench_function(BenchmarkId::new(&s.name, "wasmtime_pooling"), |b| {
            b.iter(|| {
                let mut store = Store::new(&s.pooled, ());
                s.wasmtime_pre.instantiate(&mut store).unwrap();
            })
        });
        g.bench_function(BenchmarkId::new(&s.name, "default_allocator"), |b| {
            b.iter(|| {
                let mut store = Store::new(&s.default_engine, ());
                s.default_linker
                    .instantiate(&mut store, &s.default_module)
                    .unwrap();
            })
        });
        g.bench_function(
            BenchmarkId::new(&s.name, "default_allocator_eager_init"),
            |b| {
                b.iter(|| {
                    let mut store = Store::new(&s.eager_engine, ());
                    s.eager_linker
                        .instantiate(&mut store, &s.eager_module)
                        .unwrap();
                })
            },
        );
    }
    g.finish();
}

fn bench_instantiate_and_call(c: &mut Criterion, minimal: &Subject) {
    let mut g = c.benchmark_group("instantiate_and_call");
    let s = minimal;
    g.bench_function(
        BenchmarkId::new(&s.name, "instance_cache_pooling_file"),
        |b| {
            b.iter(|| {
                let mut store = Store::new(&s.pooled, ());
                let instance = s.cached.instantiate(&mut store).unwrap();
                call(&mut store, instance)
            })
        },
    );
    g.bench_function(BenchmarkId::new(&s.name, "wasmtime_pooling"), |b| {
        b.iter(|| {
            let mut store = Store::new(&s.pooled, ());
            let instance = s.wasmtime_pre.instantiate(&mut store).unwrap();
            call(&mut store, instance)
        })
    });
    g.bench_function(BenchmarkId::new(&s.name, "default_allocator"), |b| {
        b.iter(|| {
            let mut store = Store::new(&s.default_engine, ());
            let instance = s
                .default_linker
                .instantiate(&mut store, &s.default_module)
                .unwrap();
            call(&mut store, instance)
        })
    });
    g.bench_function(BenchmarkId::new(&s.name, "reused_instance_unsafe"), |b| {
        let mut store = Store::new(&s.pooled, ());
        let instance = s.cached.instantiate(&mut store).unwrap();
        b.iter(|| call(&mut store, instance))
    });
    g.finish();
}

/// `Rss` and `Private_Dirty` of this process, in KiB.
fn resident() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    (field("Rss:"), field("Private_Dirty:"))
}

/// Resident memory per live instance of `s`, each writing one byte into each of `pages`
/// pages of its memory, with the instance cache's pooling engine and the default allocator.
fn report_memory(s: &Subject, live: usize, pages: u64) {
    let dirty = |store: &mut Store<()>, instance: Instance| {
        if let Some(memory) = instance.get_memory(&mut *store, "memory") {
            let size = memory.data_size(&*store) as u64;
            for page in 0..pages.min(size / 4096) {
                memory.data_mut(&mut *store)[(page * 4096) as usize] ^= 1;
            }
        }
    };
    let measure = |label: &str, make: &dyn Fn() -> (Store<()>, Instance)| {
        let (rss0, dirty0) = resident();
        let mut held = Vec::with_capacity(live);
        for _ in 0..live {
            let (mut store, instance) = make();
            dirty(&mut store, instance);
            held.push(store);
        }
        let (rss1, dirty1) = resident();
        eprintln!(
            "memory: {} x{live} ({label}): {:.0} KiB resident, {:.0} KiB private dirty per \
             instance ({pages} pages of 4 KiB written by each)",
            s.name,
            (rss1.saturating_sub(rss0)) as f64 / live as f64,
            (dirty1.saturating_sub(dirty0)) as f64 / live as f64,
        );
        drop(held);
    };
    measure("instance cache, pooling, file tier", &|| {
        let mut store = Store::new(&s.pooled, ());
        let instance = s.cached.instantiate(&mut store).unwrap();
        (store, instance)
    });
    measure("default allocator", &|| {
        let mut store = Store::new(&s.default_engine, ());
        let instance = s
            .default_linker
            .instantiate(&mut store, &s.default_module)
            .unwrap();
        (store, instance)
    });
}

fn main() {
    let subjects: Vec<Subject> = modules()
        .iter()
        .map(|(name, wasm)| subject(name, wasm))
        .collect();
    if let Some(largest) = subjects.last() {
        report_memory(largest, 100, 16);
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    bench_instantiate(&mut c, &subjects);
    bench_instantiate_and_call(&mut c, &subjects[0]);
    c.final_summary();
}
