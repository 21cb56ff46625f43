//! The memory backend's get and put against the raw quick_cache calls it wraps.
//!
//! Run with `cargo bench -p warmcache-memory --bench memory`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey};
use warmcache_memory::MemoryBackend;

fn key(n: u64) -> CacheKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_le_bytes());
    CacheKey::from_bytes(b)
}

#[derive(Clone)]
struct W;
impl quick_cache::Weighter<CacheKey, Bytes> for W {
    fn weight(&self, _k: &CacheKey, v: &Bytes) -> u64 {
        v.len() as u64 + 64
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for (len, label) in [(4usize << 10, "4KiB"), (1 << 20, "1MiB")] {
        let value = Bytes::from(vec![5u8; len]);
        g.throughput(Throughput::Bytes(len as u64));
        let backend = MemoryBackend::builder()
            .capacity(256 << 20)
            .build()
            .unwrap();
        let raw: quick_cache::sync::Cache<CacheKey, Bytes, W> =
            quick_cache::sync::Cache::with_weighter(1024, 256 << 20, W);
        for n in 0..64 {
            block_on(backend.put(&key(n), value.clone())).unwrap();
            raw.insert(key(n), value.clone());
        }
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new("backend_get", label), |b| {
            b.iter(|| {
                i = (i + 1) % 64;
                block_on(backend.get(&key(i))).unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("raw_get", label), |b| {
            b.iter(|| {
                i = (i + 1) % 64;
                raw.get(&key(i))
            })
        });
        g.bench_function(BenchmarkId::new("backend_put", label), |b| {
            b.iter(|| {
                i = (i + 1) % 64;
                block_on(backend.put(&key(i), value.clone())).unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("raw_put", label), |b| {
            b.iter(|| {
                i = (i + 1) % 64;
                raw.insert(key(i), value.clone())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
