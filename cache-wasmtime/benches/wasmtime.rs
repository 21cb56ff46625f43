//! Warm starts of real modules: every tier, bytes vs mmap, against a cold compile and against
//! wasmtime's own on-disk cache, plus the parts a warm start is made of.
//!
//! Run with `cargo bench -p warmcache-wasmtime --bench wasmtime`. Modules: a generated small one,
//! and `esbuild.wasm` and `yosys.wasm` from `$WARMCACHE_CORPUS/set` (default
//! `~/.cache/warmcache-corpus/set`, filled by `scripts/fetch-corpus.sh`) when present. The S3 tier
//! is measured when `WARMCACHE_MOTO_SERVER` names moto's server (`scripts/test.sh` installs it).
//! Cold compiles of the corpus modules take seconds each, so they are timed once and printed
//! rather than sampled.
//!
//! Every warm start here uses the hash-supplied entry point, so the figures are the tier's cost
//! (read, verify, load) without hashing the wasm; `memory_hit/unhashed` shows that cost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

#[path = "../tests/common/corpus.rs"]
mod corpus;
#[path = "../../backend-s3/tests/common/mod.rs"]
mod s3_common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warmcache_wasmtime::Wasm;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures::executor::block_on;
use warmcache_core::{Backend, CacheKey, Integrity, Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_redb::RedbBackend;
use warmcache_rocksdb::{RocksCompression, RocksDbBackend};
use warmcache_wasmtime::{ArtifactKind, ContentHash, ModuleCache};
use wasmtime::{Engine, Module};

fn small_module() -> Vec<u8> {
    let mut wat = String::from("(module (memory 1)\n");
    for i in 0..200 {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i32) (result i32) local.get 0 i32.const {i} i32.mul \
             i32.const 3 i32.shl local.get 0 i32.xor i32.load)\n"
        ));
    }
    wat.push(')');
    wat::parse_str(wat).unwrap()
}

fn modules() -> Vec<(String, Vec<u8>)> {
    let mut modules = vec![("small".to_owned(), small_module())];
    modules.extend(corpus::modules(&["esbuild", "yosys"]));
    modules
}

/// Tier stacks holding one module's artifact, each on its own backend.
struct Stacks {
    _dir: tempfile::TempDir,
    named: Vec<(&'static str, ModuleCache)>,
}

fn stacks(
    key: &CacheKey,
    artifact: &[u8],
    compile: Duration,
    s3: Option<Arc<dyn Backend>>,
) -> Stacks {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FsBackend::builder(dir.path().join("fs")).open().unwrap());
    let mut backends: Vec<(&'static str, Arc<dyn Backend>)> = vec![
        (
            "redb",
            Arc::new(
                RedbBackend::builder(dir.path().join("cache.redb"))
                    .open()
                    .unwrap(),
            ),
        ),
        (
            "rocksdb",
            Arc::new(
                RocksDbBackend::builder(dir.path().join("rocks"))
                    .open()
                    .unwrap(),
            ),
        ),
        // The default compresses blobs with LZ4; artifacts read faster without.
        (
            "rocksdb_uncompressed",
            Arc::new(
                RocksDbBackend::builder(dir.path().join("rocks-none"))
                    .compression(RocksCompression::None)
                    .open()
                    .unwrap(),
            ),
        ),
        (
            "fs_bytes",
            Arc::new(
                FsBackend::builder(dir.path().join("fs"))
                    .offer_files(false)
                    .open()
                    .unwrap(),
            ),
        ),
        ("fs_mmap", fs),
    ];
    if let Some(s3) = s3 {
        backends.push(("s3", s3));
    }
    let origin = warmcache_core::Origin::new(ArtifactKind::Module.envelope_kind(), "bench")
        .compute_ms(u64::try_from(compile.as_millis()).unwrap_or(u64::MAX));
    let named = backends
        .into_iter()
        .map(|(name, backend)| {
            let tiers = Tiered::builder().tier(Tier::new(backend)).build();
            block_on(tiers.put(key, &origin, artifact));
            (name, ModuleCache::new(tiers))
        })
        .collect();
    Stacks { _dir: dir, named }
}

fn s3_backend() -> Option<Arc<dyn Backend>> {
    if std::env::var_os("WARMCACHE_MOTO_SERVER").is_none() {
        eprintln!("WARMCACHE_MOTO_SERVER not set; the S3 tier is skipped");
        return None;
    }
    let moto = s3_common::shared();
    let bucket = s3_common::unique_bucket("wasm");
    s3_common::create_bucket(moto.port(), &bucket);
    Some(Arc::new(s3_common::backend(
        &moto.endpoint(),
        &bucket,
        "bench",
    )))
}

fn wasmtime_cache_engine(dir: &Path) -> Engine {
    let mut cache_config = wasmtime::CacheConfig::new();
    cache_config.with_directory(dir);
    let mut config = wasmtime::Config::new();
    config.cache(Some(wasmtime::Cache::new(cache_config).unwrap()));
    Engine::new(&config).unwrap()
}

fn warm_starts(c: &mut Criterion) {
    let engine = Engine::default();
    let s3 = s3_backend();
    for (name, wasm) in modules() {
        let content = ContentHash::of(&wasm);
        let started = Instant::now();
        let artifact = engine.precompile_module(&wasm).unwrap();
        let compile = started.elapsed();
        eprintln!(
            "{name}: wasm {} bytes, artifact {} bytes, cold compile {compile:?} (one run)",
            wasm.len(),
            artifact.len()
        );

        let mut g = c.benchmark_group(format!("wasmtime/{name}"));
        g.sample_size(20);
        g.warm_up_time(Duration::from_secs(1));
        g.measurement_time(Duration::from_secs(4));

        if name == "small" {
            g.bench_function("cold_compile", |b| {
                b.iter(|| Module::new(&engine, &wasm).unwrap())
            });
        }

        let live = ModuleCache::builder().build();
        live.get_or_compile(&engine, &wasm).unwrap();
        g.bench_function(BenchmarkId::new("memory_hit", "hashed"), |b| {
            b.iter(|| {
                live.get_or_compile(
                    &engine,
                    Wasm::hashed(content, || -> std::io::Result<Vec<u8>> {
                        unreachable!("hit")
                    }),
                )
                .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("memory_hit", "unhashed"), |b| {
            b.iter(|| live.get_or_compile(&engine, &wasm).unwrap())
        });

        let key = live.key_for(&engine, &ContentHash::of(&wasm));
        let stacks = stacks(&key, &artifact, compile, s3.clone());
        for (tier, cache) in &stacks.named {
            g.bench_function(BenchmarkId::new("warm_start", tier), |b| {
                b.iter(|| {
                    cache.clear_live();
                    cache
                        .get_or_compile(
                            &engine,
                            Wasm::hashed(content, || -> std::io::Result<Vec<u8>> {
                                unreachable!("stored")
                            }),
                        )
                        .unwrap()
                })
            });
            let stats = cache.stats();
            assert_eq!((stats.computes, stats.decode_errors), (0, 0), "{tier}");
        }

        let wasmtime_dir = tempfile::tempdir().unwrap();
        let cached_engine = wasmtime_cache_engine(wasmtime_dir.path());
        Module::new(&cached_engine, &wasm).unwrap();
        g.bench_function(BenchmarkId::new("warm_start", "wasmtime_cache"), |b| {
            b.iter(|| Module::new(&cached_engine, &wasm).unwrap())
        });

        // The parts of a warm start.
        let sealed = Integrity::plain().seal(
            &key,
            ArtifactKind::Module.envelope_kind(),
            "bench",
            &artifact,
        );
        g.bench_function(BenchmarkId::new("part", "verify"), |b| {
            b.iter(|| Integrity::plain().verify(&key, None, &sealed).unwrap())
        });
        g.bench_function(BenchmarkId::new("part", "deserialize_bytes"), |b| {
            // SAFETY: the artifact was just produced by this engine.
            #[allow(unsafe_code)]
            b.iter(|| unsafe { Module::deserialize(&engine, &artifact) }.unwrap())
        });
        let raw_file = wasmtime_dir.path().join("raw.cwasm");
        std::fs::write(&raw_file, &artifact).unwrap();
        g.bench_function(BenchmarkId::new("part", "deserialize_file"), |b| {
            // SAFETY: as above; nothing modifies the file.
            #[allow(unsafe_code)]
            b.iter(|| unsafe { Module::deserialize_file(&engine, &raw_file) }.unwrap())
        });
        g.bench_function(BenchmarkId::new("part", "hash_wasm"), |b| {
            b.iter(|| ContentHash::of(&wasm))
        });
        g.finish();
    }
}

/// 64 threads asking for one cold module at once, against one thread compiling it: the wall
/// time from the moment all are released until the last has its module.
fn single_flight(c: &mut Criterion) {
    const THREADS: usize = 64;
    let engine = Engine::default();
    let mut wat = String::from("(module\n");
    for i in 0..1500 {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i32) (result i32) local.get 0 i32.const {i} i32.mul)\n"
        ));
    }
    wat.push(')');
    let wasm = wat::parse_str(wat).unwrap();
    let mut g = c.benchmark_group("wasmtime/single_flight");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for threads in [1, THREADS] {
        g.bench_function(
            BenchmarkId::new("cold", format!("{threads}_threads")),
            |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let cache = ModuleCache::builder().build();
                        let start = std::sync::Barrier::new(threads + 1);
                        total += std::thread::scope(|s| {
                            let handles: Vec<_> = (0..threads)
                                .map(|_| {
                                    s.spawn(|| {
                                        start.wait();
                                        cache.get_or_compile(&engine, &wasm).unwrap();
                                    })
                                })
                                .collect();
                            start.wait();
                            let released = Instant::now();
                            for handle in handles {
                                handle.join().unwrap();
                            }
                            released.elapsed()
                        });
                        assert_eq!(cache.stats().computes, 1);
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, warm_starts, single_flight);
criterion_main!(benches);
