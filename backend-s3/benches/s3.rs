//! The S3 backend against raw object_store calls on the same server (moto on loopback), the
//! cost of a cold warm start through S3 (plain and zstd) versus the local redb tier, and zstd's
//! speed and ratio on real modules.
//!
//! Run with `cargo bench -p warmcache-s3 --bench s3` (needs moto: `scripts/test.sh` installs it).
//! Uses `$WARMCACHE_CORPUS/set/*.wasm` (`scripts/fetch-corpus.sh` fetches them) when present.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    unreachable_pub
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, Compression, Integrity, Origin, Tier, Tiered};
use warmcache_redb::RedbBackend;

fn key(n: u64) -> CacheKey {
    warmcache_core::KeyBuilder::new("bench").integer(n).finish()
}

fn payload(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    blake3::Hasher::new().finalize_xof().fill(&mut v);
    Bytes::from(v)
}

/// A real module for size and compressibility: the largest corpus file, else synthetic.
fn module() -> (String, Bytes) {
    let dir = std::env::var_os("WARMCACHE_CORPUS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/warmcache-corpus"))
        })
        .map(|d| d.join("set"));
    for name in ["resvg.wasm", "boolector.wasm"] {
        if let Some(bytes) = dir.as_ref().and_then(|d| std::fs::read(d.join(name)).ok()) {
            return (name.to_owned(), Bytes::from(bytes));
        }
    }
    (
        "synthetic".to_owned(),
        Bytes::from(b"(func $f (param i32) (result i32) local.get 0)".repeat(100_000)),
    )
}

fn backend_vs_raw(c: &mut Criterion) {
    let moto = common::shared();
    let bucket = common::unique_bucket("bench");
    common::create_bucket(moto.port(), &bucket);
    // The default multipart threshold (100 MiB), so 64 MiB goes up in one request like raw.
    let backend = warmcache_s3::S3Backend::builder(format!("s3://{bucket}/backend"))
        .endpoint(moto.endpoint())
        .allow_http(true)
        .region("us-east-1")
        .credentials("testing", "testing-secret")
        .build()
        .unwrap();
    let raw: Arc<dyn ObjectStore> = Arc::clone(backend.store());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("s3");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    for (len, label) in [
        (4usize << 10, "4KiB"),
        (1 << 20, "1MiB"),
        (64 << 20, "64MiB"),
    ] {
        let value = payload(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.sample_size(if len > 1 << 20 { 10 } else { 30 });
        let k = key(len as u64);
        let raw_path = Path::from(format!("raw/{label}"));
        g.bench_function(BenchmarkId::new("backend_put", label), |b| {
            b.iter(|| block_on(backend.put(&k, value.clone())).unwrap())
        });
        g.bench_function(BenchmarkId::new("raw_put", label), |b| {
            b.iter(|| {
                rt.block_on(raw.put(&raw_path, PutPayload::from_bytes(value.clone())))
                    .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("backend_get", label), |b| {
            b.iter(|| block_on(backend.get(&k)).unwrap().unwrap())
        });
        g.bench_function(BenchmarkId::new("raw_get", label), |b| {
            b.iter(|| {
                rt.block_on(async { raw.get(&raw_path).await.unwrap().bytes().await.unwrap() })
            })
        });
    }
    g.finish();
}

fn cold_warm_start(c: &mut Criterion) {
    let moto = common::shared();
    let bucket = common::unique_bucket("warm");
    common::create_bucket(moto.port(), &bucket);
    let (name, module) = module();
    let integrity = Integrity::keyed(b"bench secret");
    let dir = tempfile::tempdir().unwrap();
    let redb_path = dir.path().join("local.redb");
    let k = key(7);
    {
        let s3 = Arc::new(common::backend(&moto.endpoint(), &bucket, "plain"));
        let s3z = Arc::new(common::backend(&moto.endpoint(), &bucket, "zstd"));
        let redb = Arc::new(RedbBackend::open(&redb_path).unwrap());
        let tiers = Tiered::builder()
            .tier(Tier::new(redb))
            .tier(Tier::new(s3))
            .tier(Tier::new(s3z).compression(Compression::Zstd { level: 3 }))
            .integrity(integrity.clone())
            .build();
        block_on(tiers.put(&k, &Origin::new(1, "bench"), &module));
    }
    let mut g = c.benchmark_group(format!("cold_warm_start/{name}"));
    g.throughput(Throughput::Bytes(module.len() as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    // Each iteration is a new process's first read: open the tier, read, verify.
    for (label, prefix, compression) in [
        ("s3_plain", "plain", Compression::None),
        ("s3_zstd3", "zstd", Compression::Zstd { level: 3 }),
    ] {
        g.bench_function(label, |b| {
            b.iter(|| {
                let s3 = Arc::new(common::backend(&moto.endpoint(), &bucket, prefix));
                let tiers = Tiered::builder()
                    .tier(Tier::new(s3).compression(compression))
                    .integrity(integrity.clone())
                    .build();
                let hit = block_on(tiers.get(&k, 1)).unwrap();
                assert_eq!(hit.payload().len(), module.len());
            })
        });
    }
    g.bench_function("redb", |b| {
        b.iter(|| {
            let redb = Arc::new(RedbBackend::open(&redb_path).unwrap());
            let tiers = Tiered::builder()
                .tier(Tier::new(redb))
                .integrity(integrity.clone())
                .build();
            let hit = block_on(tiers.get(&k, 1)).unwrap();
            assert_eq!(hit.payload().len(), module.len());
        })
    });
    g.finish();
}

fn zstd_levels(c: &mut Criterion) {
    let (name, module) = module();
    let mut g = c.benchmark_group(format!("zstd/{name}"));
    g.throughput(Throughput::Bytes(module.len() as u64));
    g.sample_size(10);
    for level in [1, 3, 9] {
        let compressed = zstd::bulk::compress(&module, level).unwrap();
        eprintln!(
            "zstd level {level} on {name}: {} -> {} bytes (ratio {:.2})",
            module.len(),
            compressed.len(),
            module.len() as f64 / compressed.len() as f64
        );
        g.bench_function(BenchmarkId::new("compress", level), |b| {
            b.iter(|| zstd::bulk::compress(&module, level).unwrap())
        });
        g.bench_function(BenchmarkId::new("decompress", level), |b| {
            b.iter(|| zstd::bulk::decompress(&compressed, module.len()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, backend_vs_raw, cold_warm_start, zstd_levels);
criterion_main!(benches);
