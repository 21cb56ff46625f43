//! The RocksDB backend's get and put against raw `DB::put` / `DB::get_pinned` on a database
//! opened with the same options (blob files, LZ4, no fsync per write).
//!
//! Run with `cargo bench -p warmcache-rocksdb --bench rocksdb`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use rocksdb::{DB, DBCompressionType, Options};
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey};
use warmcache_rocksdb::RocksDbBackend;

fn key(n: u64) -> CacheKey {
    warmcache_core::KeyBuilder::new("bench").integer(n).finish()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let backend = RocksDbBackend::builder(dir.path().join("backend"))
        .capacity(8 << 30)
        .open()
        .unwrap();
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_enable_blob_files(true);
    opts.set_min_blob_size(64 << 10);
    opts.set_blob_compression_type(DBCompressionType::Lz4);
    opts.set_enable_blob_gc(true);
    let raw = DB::open(&opts, dir.path().join("raw")).unwrap();
    let mut g = c.benchmark_group("rocksdb");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    for (len, label) in [
        (4usize << 10, "4KiB"),
        (1 << 20, "1MiB"),
        (64 << 20, "64MiB"),
    ] {
        let value = Bytes::from(vec![5u8; len]);
        g.throughput(Throughput::Bytes(len as u64));
        g.sample_size(if len > 1 << 20 { 10 } else { 30 });
        let slots: u64 = if len > 1 << 20 { 4 } else { 64 };
        for n in 0..slots {
            block_on(backend.put(&key(n), value.clone())).unwrap();
            raw.put(key(n).as_bytes(), &value).unwrap();
        }
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new("backend_get", label), |b| {
            b.iter(|| {
                i = (i + 1) % slots;
                block_on(backend.get(&key(i))).unwrap().unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("raw_get", label), |b| {
            b.iter(|| {
                i = (i + 1) % slots;
                Bytes::copy_from_slice(&raw.get_pinned(key(i).as_bytes()).unwrap().unwrap())
            })
        });
        g.bench_function(BenchmarkId::new("backend_put", label), |b| {
            b.iter(|| {
                i = (i + 1) % slots;
                block_on(backend.put(&key(i), value.clone())).unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("raw_put", label), |b| {
            b.iter(|| {
                i = (i + 1) % slots;
                raw.put(key(i).as_bytes(), &value).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
