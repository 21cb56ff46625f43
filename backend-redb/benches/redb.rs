//! The redb backend's get and put against the raw redb API on the same kind of file.
//!
//! The raw side is the minimum a cache needs: one table, one insert per durable commit, one
//! read transaction per get. The backend adds LRU metadata and totals to every put.
//!
//! Run with `cargo bench -p warmcache-redb --bench redb`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use redb::{ReadableDatabase, TableDefinition};
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey};
use warmcache_redb::RedbBackend;

const RAW: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("raw");

fn key(n: u64) -> CacheKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_le_bytes());
    CacheKey::from_bytes(b)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("redb");
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
        let backend = RedbBackend::builder(dir.path().join(format!("backend-{label}.redb")))
            .capacity(2 << 30)
            .open()
            .unwrap();
        let raw = redb::Database::create(dir.path().join(format!("raw-{label}.redb"))).unwrap();
        for n in 0..slots {
            block_on(backend.put(&key(n), value.clone())).unwrap();
            let txn = raw.begin_write().unwrap();
            txn.open_table(RAW)
                .unwrap()
                .insert(*key(n).as_bytes(), &value[..])
                .unwrap();
            txn.commit().unwrap();
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
                let txn = raw.begin_read().unwrap();
                let table = txn.open_table(RAW).unwrap();
                let v = table.get(*key(i).as_bytes()).unwrap().unwrap();
                Bytes::copy_from_slice(v.value())
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
                let txn = raw.begin_write().unwrap();
                txn.open_table(RAW)
                    .unwrap()
                    .insert(*key(i).as_bytes(), &value[..])
                    .unwrap();
                txn.commit().unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
