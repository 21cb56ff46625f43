//! Hot paths of warmcache-core: key derivation against raw blake3, envelope verification, and a
//! live-tier hit through the cache front.
//!
//! Run with `cargo bench -p warmcache-core --bench core`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warmcache_core::bytes::Bytes;
use warmcache_core::{
    BytesCodec, Cache, CacheKey, Compression, Integrity, KeyBuilder, Namespace, Origin, SigningKey,
    Trust,
};

const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (1 << 20, "1MiB"), (64 << 20, "64MiB")];

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("key");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let ns = Namespace::new("bench");
    for (len, label) in SIZES {
        let input = data(len);
        g.throughput(Throughput::Bytes(len as u64));
        if len > 1 << 20 {
            g.sample_size(10);
        }
        g.bench_with_input(BenchmarkId::new("raw_blake3", label), &input, |b, d| {
            b.iter(|| blake3::hash(d))
        });
        g.bench_with_input(BenchmarkId::new("key_builder", label), &input, |b, d| {
            b.iter(|| KeyBuilder::new("bench").bytes(d).finish())
        });
        g.bench_with_input(
            BenchmarkId::new("namespace_builder", label),
            &input,
            |b, d| b.iter(|| ns.builder().bytes(d).finish()),
        );
    }
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope_verify");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    let key = CacheKey::from_bytes([7; 32]);
    for (len, label) in [(4 << 10, "4KiB"), (1 << 20, "1MiB"), (64 << 20, "64MiB")] {
        let payload = data(len);
        g.throughput(Throughput::Bytes(len as u64));
        if len > 1 << 20 {
            g.sample_size(10);
        }
        for (mode, integrity) in [
            ("plain", Integrity::plain()),
            ("keyed", Integrity::keyed(b"secret")),
        ] {
            let sealed = integrity.seal(&key, 1, "bench", &payload);
            g.bench_with_input(BenchmarkId::new(mode, label), &sealed, |b, s| {
                b.iter(|| integrity.open(&key, s).unwrap())
            });
        }
        // A signed tier's entry as a consumer verifies it: the tag and the Ed25519 signature.
        let signer = SigningKey::generate().unwrap();
        let producer = Integrity::plain().signing(signer.clone());
        let consumer = Integrity::plain().trusting(signer.public_key());
        let origin = Origin::new(1, "bench");
        let signed = producer.seal_for(
            Trust::Signature,
            &key,
            &origin,
            0,
            &payload,
            Compression::None,
        );
        g.bench_with_input(BenchmarkId::new("signed", label), &signed, |b, s| {
            b.iter(|| consumer.open_for(Trust::Signature, &key, None, s).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("seal_plain", label), &payload, |b, p| {
            b.iter(|| Integrity::plain().seal(&key, 1, "bench", p))
        });
        g.bench_with_input(BenchmarkId::new("seal_signed", label), &payload, |b, p| {
            b.iter(|| producer.seal_for(Trust::Signature, &key, &origin, 0, p, Compression::None))
        });
    }
    g.finish();
}

fn live_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_live_hit");
    let cache: Cache<Bytes, BytesCodec> = Cache::builder("bench", BytesCodec).build();
    // A caller that already has the content hash builds the key from it: no hashing of the code.
    let content_hash = CacheKey::from_bytes([9; 32]);
    let key = cache.key_builder().key(&content_hash).finish();
    cache
        .get_or_compute_vouched(key, || {
            Ok::<_, std::io::Error>(Bytes::from_static(b"module"))
        })
        .unwrap();
    g.bench_function("supplied_hash", |b| {
        b.iter(|| {
            let key = cache.key_builder().key(&content_hash).finish();
            cache
                .get_or_compute_vouched(key, || Ok::<_, std::io::Error>(Bytes::new()))
                .unwrap()
        })
    });
    g.bench_function("prebuilt_key", |b| {
        b.iter(|| {
            cache
                .get_or_compute_vouched(key, || Ok::<_, std::io::Error>(Bytes::new()))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, keys, envelope, live_hit);
criterion_main!(benches);
