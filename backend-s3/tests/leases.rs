//! Leases through the tier stack: a computation that outlives the lease's ttl keeps its lease
//! (it is renewed), so a second cache over the same bucket waits for it instead of computing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use warmcache_core::bytes::Bytes;
use warmcache_core::{BytesCodec, Cache, Coordination, KeyBuilder, Tier, Tiered};
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
