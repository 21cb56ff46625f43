//! Leases through the tier stack: a computation that outlives the lease's ttl keeps its lease
//! (it is renewed), so a second cache over the same bucket waits for it instead of computing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use warmcache_core::backend::Lease;
use warmcache_core::bytes::Bytes;
use warmcache_core::{
    Backend, BytesCodec, Cache, CacheKey, Coordination, KeyBuilder, Tier, Tiered,
};
use warmcache_s3::S3Backend;

fn cache_over(bucket: &Arc<S3Backend>) -> Cache<Bytes, BytesCodec> {
    let tiers = Tiered::builder()
        .tier(Tier::new(bucket.clone()))
        .coordination(Coordination::new().ttl(Duration::from_millis(300)))
        .build();
    Cache::builder("leases", BytesCodec).tiers(tiers).build()
}

#[test]
fn a_long_computation_keeps_its_lease_and_the_other_cache_waits_for_it() {
    let bucket = Arc::new(S3Backend::builder("memory://").build().unwrap());
    let (first, second) = (cache_over(&bucket), cache_over(&bucket));
    let key = KeyBuilder::new("leases").integer(1u8).finish();
    std::thread::scope(|s| {
        s.spawn(|| {
            first
                .get_or_compute_vouched(key, || {
                    // Five times the ttl: only renewal keeps the lease.
                    std::thread::sleep(Duration::from_millis(1500));
                    Ok::<_, std::io::Error>(Bytes::from_static(b"slow"))
                })
                .unwrap()
        });
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            let value = second
                .get_or_compute_vouched(key, || {
                    Ok::<_, std::io::Error>(Bytes::from_static(b"second"))
                })
                .unwrap();
            assert_eq!(value, Bytes::from_static(b"slow"));
        });
    });
    let (a, b) = (first.stats(), second.stats());
    assert_eq!(a.computes + b.computes, 1, "{a:?}\n{b:?}");
    assert_eq!(b.coordinated, 1, "{b:?}");
    assert_eq!(b.tiers[0].lease_waits, 1, "{b:?}");
}

fn bucket() -> (Arc<S3Backend>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = S3Backend::builder("memory://")
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    (Arc::new(backend), rt)
}

const TTL: Duration = Duration::from_millis(100);

fn take(bucket: &S3Backend, key: &CacheKey, holder: &str) -> Option<Box<dyn Lease>> {
    futures::executor::block_on(bucket.try_lease(key, TTL, holder)).unwrap()
}

fn expire() {
    std::thread::sleep(TTL * 2);
}

/// Issue 24, item 16: renew and release act only on the lease's own generation, and
/// generations never start over, so a stale holder cannot free or steal a newer holder's lease.
#[test]
fn a_stale_holder_neither_renews_nor_releases_a_newer_holders_lease() {
    use futures::executor::block_on;
    let (bucket, _rt) = bucket();
    let key = KeyBuilder::new("leases").integer(2u8).finish();
    let stale = take(&bucket, &key, "stale").unwrap();
    expire();
    let middle = take(&bucket, &key, "middle").expect("an expired lease is taken over");
    block_on(middle.release()).unwrap();
    let newest = take(&bucket, &key, "newest").expect("a released lease is free");
    // The stale holder wakes up: its renewal fails, and neither it nor its release touches
    // the newest holder's lease.
    assert!(
        block_on(stale.renew()).is_err(),
        "a stale holder renewed a lease it lost"
    );
    block_on(stale.release()).unwrap();
    assert!(
        take(&bucket, &key, "intruder").is_none(),
        "a stale holder's release freed the newest holder's lease"
    );
    block_on(newest.renew()).unwrap();
    block_on(newest.release()).unwrap();
    assert!(take(&bucket, &key, "next").is_some());
}

/// Issue 24, item 16: a generation planted with a deadline far in the future (or at the end of
/// the number range) never blocks the key for longer than a few ttls, and never panics.
#[test]
fn planted_generations_neither_block_a_key_nor_overflow() {
    use object_store::ObjectStoreExt;
    let (bucket, rt) = bucket();
    let key = KeyBuilder::new("leases").integer(3u8).finish();
    let dir = bucket.prefix().clone().join("leases").join(key.to_hex());
    let plant = |name: &str, until: u64| {
        let body = format!("warmcache lease 1\nholder: planted\nuntil_ms: {until}\n");
        rt.block_on(bucket.store().put(&dir.clone().join(name), body.into()))
            .unwrap();
    };
    plant("00000000000000000007", u64::MAX);
    std::thread::sleep(TTL * 5);
    assert!(
        take(&bucket, &key, "victim").is_some(),
        "a deadline far in the future held the key"
    );

    let key = KeyBuilder::new("leases").integer(4u8).finish();
    let dir = bucket.prefix().clone().join("leases").join(key.to_hex());
    let body = "warmcache lease 1\nholder: planted\nuntil_ms: 0\n";
    rt.block_on(
        bucket
            .store()
            .put(&dir.clone().join(u64::MAX.to_string()), body.into()),
    )
    .unwrap();
    // No panic; a clear error the stack treats as "no lease" and computes.
    let result = futures::executor::block_on(bucket.try_lease(&key, TTL, "victim"));
    assert!(result.is_err(), "{result:?}");
}
