//! The file tier's get and put against the raw file-system calls a careful writer makes, and a
//! 64 MiB entry loaded as bytes versus handed out as an opened file.
//!
//! Run with `cargo bench -p warmcache-fs --bench fs`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey};
use warmcache_fs::FsBackend;

fn key(n: u64) -> CacheKey {
    warmcache_core::KeyBuilder::new("bench").integer(n).finish()
}

/// The raw equivalent of a durable, atomic put: temp file, write, fsync, rename, fsync dir.
fn raw_put(dir: &Path, name: &str, value: &[u8]) {
    let temp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&temp).unwrap();
    f.write_all(value).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&temp, dir.join(name)).unwrap();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::builder(dir.path().join("cache"))
        .capacity(8 << 30)
        .open()
        .unwrap();
    let raw_dir = dir.path().join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let mut g = c.benchmark_group("fs");
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
        let k = key(len as u64);
        // Stored up front, so the read benchmarks also run alone (`cargo bench -- get`).
        block_on(fs.put(&k, value.clone())).unwrap();
        raw_put(&raw_dir, label, &value);
        g.bench_function(BenchmarkId::new("backend_put", label), |b| {
            b.iter(|| block_on(fs.put(&k, value.clone())).unwrap())
        });
        g.bench_function(BenchmarkId::new("raw_put", label), |b| {
            b.iter(|| raw_put(&raw_dir, label, &value))
        });
        g.bench_function(BenchmarkId::new("backend_get", label), |b| {
            b.iter(|| block_on(fs.get(&k)).unwrap().unwrap())
        });
        g.bench_function(BenchmarkId::new("raw_get", label), |b| {
            b.iter(|| Bytes::from(std::fs::read(raw_dir.join(label)).unwrap()))
        });
        if len == 64 << 20 {
            g.bench_function(BenchmarkId::new("backend_open_file", label), |b| {
                b.iter(|| block_on(fs.open_file(&k)).unwrap().unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
