//! Remote behaviour end to end against real servers, S3 (moto), Azure Blob Storage (Azurite)
//! and WebDAV (nginx): sharing through the bucket with promotion into local tiers, background writes, an
//! outage with the circuit breaker, and forged objects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::executor::block_on;
use warmcache_conformance::{FaultConfig, FaultyBackend};
use warmcache_core::bytes::Bytes;
use warmcache_core::{
    Backend, BoxError, BytesCodec, Cache, Codec, Compression, Integrity, Tier, Tiered,
};
use warmcache_memory::MemoryBackend;
use warmcache_redb::RedbBackend;
use warmcache_s3::S3Backend;

use common::Server;

fn compile(input: &(String, u32)) -> Result<Bytes, std::io::Error> {
    Ok(Bytes::from(
        format!("artifact of {} at O{}", input.0, input.1).repeat(50),
    ))
}

struct Stack {
    cache: Cache<Bytes, BytesCodec>,
    redb: Arc<RedbBackend>,
    _dir: tempfile::TempDir,
}

fn stack(remote: Arc<dyn Backend>, integrity: Integrity) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(RedbBackend::open(dir.path().join("local.redb")).unwrap());
    let memory = Arc::new(MemoryBackend::with_capacity(64 << 20).unwrap());
    let tiers = Tiered::builder()
        .tier(Tier::new(memory).name("memory"))
        .tier(Tier::new(redb.clone()).name("redb"))
        .tier(
            Tier::new(remote)
                .name("s3")
                .background(64)
                .timeout(Duration::from_secs(3))
                .circuit_breaker(2, Duration::from_millis(500))
                .compression(Compression::Zstd { level: 3 }),
        )
        .integrity(integrity)
        .build();
    Stack {
        cache: Cache::builder("remote-test", BytesCodec)
            .tiers(tiers)
            .build(),
        redb,
        _dir: dir,
    }
}

fn bucket_backend<S: Server>(tag: &str) -> (Arc<S3Backend>, String) {
    let server = S::shared();
    let bucket = common::unique_bucket(tag);
    server.create_bucket(&bucket);
    (
        Arc::new(server.backend_with(&bucket, "cache", |b| b)),
        bucket,
    )
}

/// Each test, once per server.
macro_rules! remote_tests {
    ($module:ident, $server:ty) => {
        mod $module {
            #[test]
            fn a_second_host_hits_the_bucket_and_promotes_locally() {
                super::a_second_host_hits_the_bucket_and_promotes_locally::<$server>();
            }
            #[test]
            fn uploads_happen_in_the_background_and_flush_waits() {
                super::uploads_happen_in_the_background_and_flush_waits::<$server>();
            }
            #[test]
            fn an_outage_never_fails_callers_and_the_breaker_recovers() {
                super::an_outage_never_fails_callers_and_the_breaker_recovers::<$server>();
            }
            #[test]
            fn forged_objects_are_rejected_counted_and_never_decoded() {
                super::forged_objects_are_rejected_counted_and_never_decoded::<$server>();
            }
        }
    };
}

remote_tests!(s3, crate::common::Moto);
remote_tests!(azure, crate::azurite::Azurite);
remote_tests!(webdav, crate::common::webdav::Nginx);

fn a_second_host_hits_the_bucket_and_promotes_locally<S: Server>() {
    let (s3, _) = bucket_backend::<S>("share");
    let input = ("shared.wasm".to_owned(), 2);
    let first = stack(s3.clone(), Integrity::keyed(b"fleet secret"));
    let value = first.cache.get_or_compute(&input, compile).unwrap();
    first.cache.flush();
    let key = first.cache.key_for(&input);
    assert!(block_on(s3.contains(&key)).unwrap(), "not uploaded");

    // Another host: same bucket, empty memory and disk.
    let second = stack(s3.clone(), Integrity::keyed(b"fleet secret"));
    let got = second.cache.get_or_compute(&input, compile).unwrap();
    assert_eq!(got, value);
    let stats = second.cache.stats();
    assert_eq!(stats.computes, 0, "the second host compiled");
    assert_eq!(stats.tiers[2].hits, 1);
    assert!(
        block_on(second.redb.contains(&key)).unwrap(),
        "S3 hit not promoted to the local disk tier"
    );
    // The bucket copy is compressed; the promoted local copy is not.
    let remote = block_on(s3.get(&key)).unwrap().unwrap();
    let local = block_on(second.redb.get(&key)).unwrap().unwrap();
    assert!(warmcache_core::inspect(&remote).unwrap().compressed);
    assert!(!warmcache_core::inspect(&local).unwrap().compressed);
    assert!(remote.len() < local.len());
}

fn uploads_happen_in_the_background_and_flush_waits<S: Server>() {
    let (s3, _) = bucket_backend::<S>("bg");
    // A slow link: every remote operation takes 500 ms more.
    let slow = Arc::new(FaultyBackend::new(
        s3.clone(),
        FaultConfig {
            slow_rate: 1.0,
            delay: Duration::from_millis(500),
            ..FaultConfig::default()
        },
    ));
    let tiers = Tiered::builder()
        .tier(Tier::new(Arc::new(
            MemoryBackend::with_capacity(1 << 20).unwrap(),
        )))
        .tier(Tier::new(slow).background(8))
        .build();
    let cache: Cache<Bytes, BytesCodec> = Cache::builder("bg", BytesCodec).tiers(tiers).build();
    let input = ("bg.wasm".to_owned(), 1);
    cache.get_or_compute(&input, compile).unwrap();
    // The caller is back while the upload is still queued or running.
    assert_eq!(cache.tiers().pending_writes(), 1);
    let key = cache.key_for(&input);
    assert!(!block_on(s3.contains(&key)).unwrap());
    cache.flush();
    assert_eq!(cache.tiers().pending_writes(), 0);
    assert!(block_on(s3.contains(&key)).unwrap());
}

fn an_outage_never_fails_callers_and_the_breaker_recovers<S: Server>() {
    let server = S::start();
    let port = server.port();
    server.create_bucket("wc-outage");
    let s3 = Arc::new(server.backend_with("wc-outage", "cache", |b| {
        b.retries(1, Duration::from_secs(2))
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(2))
    }));
    let node = stack(s3.clone(), Integrity::plain());
    let before: Vec<Bytes> = (0..3)
        .map(|i| {
            node.cache
                .get_or_compute(&(format!("m{i}"), 0), compile)
                .unwrap()
        })
        .collect();
    node.cache.flush();

    server.stop();
    // Known keys come from local tiers, new ones are compiled; nothing fails.
    node.cache.clear_live();
    for (i, v) in before.iter().enumerate() {
        assert_eq!(
            &node
                .cache
                .get_or_compute(&(format!("m{i}"), 0), compile)
                .unwrap(),
            v
        );
    }
    for i in 10..16 {
        let v = node
            .cache
            .get_or_compute(&(format!("m{i}"), 0), compile)
            .unwrap();
        assert_eq!(v, compile(&(format!("m{i}"), 0)).unwrap());
    }
    node.cache.flush();
    let s = node.cache.stats().tiers[2].clone();
    assert!(s.errors + s.write_errors >= 2, "{s:?}");
    assert!(s.breaker_open, "breaker did not open: {s:?}");
    assert!(s.skipped >= 1, "open breaker did not skip: {s:?}");

    // The server comes back, empty.
    let server = S::start_on(port);
    server.create_bucket("wc-outage");
    std::thread::sleep(Duration::from_millis(600));
    let input = ("after.wasm".to_owned(), 0);
    node.cache.get_or_compute(&input, compile).unwrap();
    node.cache.flush();
    let s = node.cache.stats().tiers[2].clone();
    assert!(
        !s.breaker_open,
        "breaker did not close after recovery: {s:?}"
    );
    assert!(block_on(s3.contains(&node.cache.key_for(&input))).unwrap());
    drop(server);
}

/// A codec that counts what reaches its decoder.
#[derive(Default, Clone)]
struct CountingCodec(Arc<AtomicU64>);

impl Codec<Bytes> for CountingCodec {
    type Caller = ();
    fn kind(&self) -> u32 {
        1
    }
    fn encode(&self, value: &Bytes) -> Result<Bytes, BoxError> {
        Ok(value.clone())
    }
    fn decode(&self, _caller: &(), entry: &warmcache_core::Entry) -> Result<Bytes, BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(entry.to_bytes())
    }
}

fn forged_objects_are_rejected_counted_and_never_decoded<S: Server>() {
    let (s3, _) = bucket_backend::<S>("forge");
    let secret = b"the fleet's shared secret, 32 b!";
    let decoded = Arc::new(AtomicU64::new(0));
    let cache = |decoded: &Arc<AtomicU64>| {
        let tiers = Tiered::builder()
            .tier(Tier::new(s3.clone()))
            .integrity(Integrity::keyed(secret))
            .build();
        Cache::builder("forge", CountingCodec(decoded.clone()))
            .tiers(tiers)
            .build()
    };
    let victim = cache(&decoded);
    let inputs: Vec<(String, u32)> = (0..4).map(|i| (format!("victim{i}"), 0)).collect();
    let keys: Vec<_> = inputs.iter().map(|i| victim.key_for(i)).collect();
    let evil = b"(module (func $pwned))";
    // A plain tag, a MAC made with another secret, and a valid entry copied to another key.
    block_on(s3.put(
        &keys[0],
        Integrity::plain().seal(&keys[0], 1, "attacker", evil),
    ))
    .unwrap();
    block_on(s3.put(
        &keys[1],
        Integrity::keyed(b"guessed").seal(&keys[1], 1, "attacker", evil),
    ))
    .unwrap();
    let genuine = Integrity::keyed(secret).seal(&keys[3], 1, "fleet", b"genuine");
    block_on(s3.put(&keys[2], genuine)).unwrap();
    // Plain garbage.
    block_on(s3.put(&keys[3], Bytes::from_static(b"garbage"))).unwrap();

    for input in &inputs {
        let v = victim.get_or_compute(input, compile).unwrap();
        assert_eq!(v, compile(input).unwrap());
    }
    let stats = victim.stats();
    assert_eq!(stats.computes, 4);
    assert_eq!(stats.forged(), 3, "{:?}", stats.tiers[0]);
    assert_eq!(stats.corrupt(), 1);
    assert_eq!(
        decoded.load(Ordering::SeqCst),
        0,
        "a forged entry reached the decoder"
    );
    // In a shared bucket they are left alone (another node's entries look the same), never
    // replaced: a fresh node rejects them again, and still never decodes one.
    let fresh = cache(&decoded);
    for input in &inputs {
        assert_eq!(
            fresh.get_or_compute(input, compile).unwrap(),
            compile(input).unwrap()
        );
    }
    assert_eq!(fresh.stats().computes, 4);
    assert_eq!(
        block_on(s3.get(&keys[3])).unwrap().as_deref(),
        Some(&b"garbage"[..])
    );
    assert_eq!(decoded.load(Ordering::SeqCst), 0);
}
