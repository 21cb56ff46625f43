//! A tier shared by a fleet: nodes with different secrets never destroy each other's entries,
//! a rotation reads what the previous secret sealed, short secrets are refused, a shared
//! tier without a secret is reported, and on a signed tier only producers' entries are loaded
//! and only producers write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use common::MapBackend;
use futures::executor::block_on;
use std::time::Duration;

use warmcache_core::{
    Backend, BytesCodec, Cache, Codec, ComputeError, Integrity, MIN_SECRET_LEN, OnSharedMiss,
    Origin, SigningKey, Tier, Tiered,
};

const FLEET_SECRET: &[u8] = b"the fleet's secret, 32 bytes or more";
const OTHER_SECRET: &[u8] = b"a rotated or mistyped secret, also long";

fn key(n: u8) -> warmcache_core::CacheKey {
    warmcache_core::CacheKey::from_bytes([n; 32])
}

fn stack(bucket: &Arc<MapBackend>, secret: &[u8]) -> Tiered {
    Tiered::builder()
        .integrity(Integrity::from_secret(secret).unwrap())
        .tier(Tier::new(bucket.clone()))
        .build()
}

#[test]
fn a_node_with_another_secret_neither_deletes_nor_overwrites_the_fleets_entries() {
    let bucket = MapBackend::shared();
    let fleet = stack(&bucket, FLEET_SECRET);
    let stranger = stack(&bucket, OTHER_SECRET);
    block_on(fleet.put(&key(1), &Origin::new(1, "fleet"), b"fleet's artifact"));
    let sealed = bucket.raw(&key(1)).unwrap();

    assert!(block_on(stranger.get(&key(1), 1)).is_none());
    let stats = &stranger.stats()[0];
    assert_eq!((stats.forged, stats.misses), (1, 1), "{stats:?}");
    assert_eq!(bucket.raw(&key(1)), Some(sealed.clone()), "deleted");
    // The stranger computes and stores its own value: the fleet's entry stays.
    block_on(stranger.put(&key(1), &Origin::new(1, "stranger"), b"stranger's"));
    assert_eq!(bucket.raw(&key(1)), Some(sealed), "overwritten");
    assert_eq!(stranger.stats()[0].skipped, 1);

    let hit = block_on(fleet.get(&key(1), 1)).expect("the fleet lost its entry");
    assert_eq!(hit.payload(), b"fleet's artifact");
}

#[test]
fn a_private_tier_still_removes_entries_that_fail_verification() {
    let disk = MapBackend::new();
    let old = stack(&disk, OTHER_SECRET);
    block_on(old.put(&key(2), &Origin::new(1, "t"), b"v"));
    let new = stack(&disk, FLEET_SECRET);
    assert!(block_on(new.get(&key(2), 1)).is_none());
    assert!(
        !disk.has(&key(2)),
        "a private tier keeps what it cannot verify"
    );
}

#[test]
fn a_rotation_reads_what_the_previous_secret_sealed() {
    let bucket = MapBackend::shared();
    let before = stack(&bucket, OTHER_SECRET);
    block_on(before.put(&key(3), &Origin::new(1, "t"), b"sealed before the rotation"));
    let rotated = Integrity::from_secret(FLEET_SECRET)
        .unwrap()
        .accepting(OTHER_SECRET);
    assert_ne!(rotated.key_id(), Integrity::keyed(OTHER_SECRET).key_id());
    assert_eq!(
        rotated.previous_key_ids(),
        vec![Integrity::keyed(OTHER_SECRET).key_id()]
    );
    let after = Tiered::builder()
        .integrity(rotated)
        .tier(Tier::new(bucket.clone()))
        .build();
    let hit = block_on(after.get(&key(3), 1)).expect("the previous secret's entry");
    assert_eq!(hit.payload(), b"sealed before the rotation");
    // New entries are sealed with the new secret only.
    block_on(after.put(&key(4), &Origin::new(1, "t"), b"new"));
    assert!(block_on(stack(&bucket, OTHER_SECRET).get(&key(4), 1)).is_none());
    assert!(block_on(stack(&bucket, FLEET_SECRET).get(&key(4), 1)).is_some());
}

#[test]
fn short_secrets_are_refused_and_key_ids_say_nothing_about_the_secret() {
    let err = Integrity::from_secret(b"hunter2").unwrap_err();
    assert_eq!(err.len, 7);
    assert!(
        err.to_string().contains(&MIN_SECRET_LEN.to_string()),
        "{err}"
    );
    let id = Integrity::from_secret(FLEET_SECRET).unwrap().key_id();
    assert!(id.starts_with('k') && id.len() == 17, "{id}");
    assert!(!id.contains(&hex_of(FLEET_SECRET)[..8]));
    assert_eq!(Integrity::plain().key_id(), "plain");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_shared_tier_without_a_secret_is_reported() {
    let bucket = MapBackend::shared();
    let private = MapBackend::new();
    let plain = Tiered::builder()
        .tier(Tier::new(private.clone()).name("disk"))
        .tier(Tier::new(bucket.clone()).name("bucket"))
        .build();
    assert_eq!(plain.unauthenticated_shared_tiers(), vec!["bucket"]);
    assert!(
        stack(&bucket, FLEET_SECRET)
            .unauthenticated_shared_tiers()
            .is_empty()
    );
}

#[test]
fn promotion_reseals_what_a_previous_secret_sealed() {
    // The fleet's previous-key namespace, read-only, holds an entry sealed before the rotation.
    let old_namespace = MapBackend::shared();
    block_on(stack(&old_namespace, OTHER_SECRET).put(&key(5), &Origin::new(1, "t"), b"old"));
    let local = MapBackend::new();
    let during = Tiered::builder()
        .integrity(
            Integrity::from_secret(FLEET_SECRET)
                .unwrap()
                .accepting(OTHER_SECRET),
        )
        .tier(Tier::new(local.clone()))
        .tier(Tier::new(old_namespace.clone()).read_only())
        .build();
    assert!(block_on(during.get(&key(5), 1)).is_some());
    assert_eq!(during.stats()[0].promotions, 1);
    // Once the rotation ends, what was promoted must still verify: it carries the new MAC.
    let after = stack(&local, FLEET_SECRET);
    let hit = block_on(after.get(&key(5), 1)).expect("the promoted entry kept the old MAC");
    assert_eq!(hit.payload(), b"old");
    assert_eq!(after.stats()[0].forged, 0);
}

#[test]
fn reseal_replaces_only_a_previous_secrets_tag() {
    let rotated = Integrity::from_secret(FLEET_SECRET)
        .unwrap()
        .accepting(OTHER_SECRET);
    let old = Integrity::keyed(OTHER_SECRET).seal(&key(6), 1, "t", b"payload");
    let resealed = rotated.reseal(&key(6), &old).unwrap();
    assert_ne!(resealed, old);
    let current = Integrity::keyed(FLEET_SECRET);
    assert_eq!(
        current.open(&key(6), &resealed).unwrap().payload(),
        b"payload"
    );
    let meta = warmcache_core::inspect(&resealed).unwrap();
    assert_eq!((meta.kind, meta.producer.as_str()), (1, "t"));
    // Already under the current secret: the same bytes, not sealed again.
    let fresh = current.seal(&key(6), 1, "t", b"payload");
    assert_eq!(rotated.reseal(&key(6), &fresh).unwrap(), fresh);
    // Anything that does not verify is refused.
    let stranger = Integrity::keyed(b"a third secret, not accepted by anyone here");
    let forged = stranger.seal(&key(6), 1, "t", b"payload");
    assert!(rotated.reseal(&key(6), &forged).unwrap_err().is_forgery());
}

#[test]
fn a_tier_in_its_own_key_namespace_replaces_what_fails_verification_there() {
    let namespace = MapBackend::shared();
    // Planted (or damaged) in this key's namespace: under a key nobody here holds.
    let planted = Integrity::keyed(OTHER_SECRET).seal(&key(7), 1, "t", b"planted");
    namespace.set_raw(&key(7), planted);
    let node = Tiered::builder()
        .integrity(Integrity::from_secret(FLEET_SECRET).unwrap())
        .tier(Tier::new(namespace.clone()).own_namespace())
        .build();
    assert!(block_on(node.get(&key(7), 1)).is_none());
    assert_eq!(node.stats()[0].forged, 1);
    block_on(node.put(&key(7), &Origin::new(1, "t"), b"computed"));
    let hit = block_on(stack(&namespace, FLEET_SECRET).get(&key(7), 1))
        .expect("the node's own namespace kept a planted entry forever");
    assert_eq!(hit.payload(), b"computed");
    assert_eq!(node.stats()[0].skipped, 0);
}

// Signed tiers: producers sign, consumers verify with public keys only.

const PRODUCER_LOCAL: &[u8] = b"the producer's own local secret, long";
const CONSUMER_LOCAL: &[u8] = b"a consumer's own local secret, long enough";

fn producer_key() -> SigningKey {
    SigningKey::from_pem(
        "-----BEGIN PRIVATE KEY-----\n\
         MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
         -----END PRIVATE KEY-----\n",
    )
    .unwrap()
}

/// A producer: its own disk, and the fleet's bucket as a signed tier it signs for.
fn producer(bucket: &Arc<MapBackend>) -> (Tiered, Arc<MapBackend>) {
    let disk = MapBackend::new();
    let integrity = Integrity::from_secret(PRODUCER_LOCAL)
        .unwrap()
        .signing(producer_key());
    let tiers = Tiered::builder()
        .integrity(integrity)
        .tier(Tier::new(disk.clone()))
        .tier(Tier::new(bucket.clone()).signed())
        .build();
    (tiers, disk)
}

/// A consumer: its own disk, and the bucket, trusting the producer's public key only.
fn consumer(bucket: &Arc<MapBackend>, on_miss: OnSharedMiss) -> (Tiered, Arc<MapBackend>) {
    let disk = MapBackend::new();
    let integrity = Integrity::from_secret(CONSUMER_LOCAL)
        .unwrap()
        .trusting(producer_key().public_key());
    let tiers = Tiered::builder()
        .integrity(integrity)
        .on_shared_miss(on_miss)
        .tier(Tier::new(disk.clone()))
        .tier(Tier::new(bucket.clone()).signed())
        .build();
    (tiers, disk)
}

fn objects(bucket: &MapBackend) -> u64 {
    block_on(bucket.usage()).unwrap().entries
}

#[test]
fn a_consumer_loads_what_a_producer_signed_and_never_writes_the_signed_tier() {
    let bucket = MapBackend::shared();
    let (producer, _) = producer(&bucket);
    block_on(producer.put(&key(1), &Origin::new(1, "ci"), b"signed artifact"));
    let (consumer, disk) = consumer(&bucket, OnSharedMiss::Compute);
    let hit = block_on(consumer.get(&key(1), 1)).expect("the signed entry was refused");
    assert_eq!(hit.payload(), b"signed artifact");
    assert_eq!(hit.meta().signer, Some(producer_key().public_key().id()));
    // Promoted into the consumer's disk under its own secret, signature kept.
    let local = Integrity::from_secret(CONSUMER_LOCAL)
        .unwrap()
        .open(&key(1), &disk.raw(&key(1)).unwrap())
        .unwrap();
    assert_eq!(local.meta().signer, hit.meta().signer);

    // What the consumer computes stays on its disk.
    let before = objects(&bucket);
    let cache = Cache::builder("signed", BytesCodec).tiers(consumer).build();
    let value = cache
        .get_or_compute("module", |_| {
            Ok::<_, std::io::Error>(warmcache_core::bytes::Bytes::from_static(b"local"))
        })
        .unwrap();
    assert_eq!(&value[..], b"local");
    assert_eq!(objects(&bucket), before, "a consumer wrote the signed tier");
    let stats = cache.stats().tiers;
    assert_eq!((stats[1].unpublished, stats[1].writes), (1, 0), "{stats:?}");
    // The promotion above, and the computed value.
    assert_eq!(stats[0].writes, 2);
}

#[test]
fn a_forged_entry_on_a_signed_tier_is_refused_and_left_until_a_producer_replaces_it() {
    let bucket = MapBackend::shared();
    // A node with the fleet's old shared secret, and no signing key.
    let old_fleet = Integrity::from_secret(FLEET_SECRET).unwrap();
    for sealed in [
        old_fleet.seal(&key(2), 1, "mallory", b"evil"),
        Integrity::plain().seal(&key(2), 1, "mallory", b"evil"),
        Integrity::plain()
            .signing(SigningKey::generate().unwrap())
            .seal_for(
                warmcache_core::Trust::Signature,
                &key(2),
                &Origin::new(1, "mallory"),
                0,
                b"evil",
                warmcache_core::Compression::None,
            ),
    ] {
        bucket.set_raw(&key(2), sealed.clone());
        let (consumer, disk) = consumer(&bucket, OnSharedMiss::Compute);
        assert!(block_on(consumer.get(&key(2), 1)).is_none());
        let stats = consumer.stats();
        assert_eq!((stats[1].forged, stats[1].hits), (1, 0), "{stats:?}");
        assert_eq!(bucket.raw(&key(2)), Some(sealed.clone()), "deleted");
        assert!(!disk.has(&key(2)));
        // The consumer's own value never reaches the bucket.
        block_on(consumer.put(&key(2), &Origin::new(1, "c"), b"mine"));
        assert_eq!(bucket.raw(&key(2)), Some(sealed.clone()), "overwritten");
    }
    // A producer refuses it too, keeps it, and replaces it with what it signs.
    let (producer, _) = producer(&bucket);
    assert!(block_on(producer.get(&key(2), 1)).is_none());
    assert_eq!(producer.stats()[1].forged, 1);
    assert!(
        bucket.has(&key(2)),
        "a producer deleted from the signed tier"
    );
    block_on(producer.put(&key(2), &Origin::new(1, "ci"), b"good"));
    let (consumer, _) = consumer(&bucket, OnSharedMiss::Compute);
    assert_eq!(
        block_on(consumer.get(&key(2), 1)).unwrap().payload(),
        b"good"
    );
}

#[test]
fn a_consumer_set_to_fail_computes_nothing_and_one_set_to_wait_takes_the_producers_entry() {
    let bucket = MapBackend::shared();
    let (tiers, _) = consumer(&bucket, OnSharedMiss::Fail);
    let cache = Cache::builder("signed", BytesCodec).tiers(tiers).build();
    let err = cache
        .get_or_compute("module", |_| -> Result<_, std::io::Error> {
            panic!("a consumer set to fail computed")
        })
        .unwrap_err();
    assert!(
        matches!(&err, ComputeError::Refused { tiers, .. } if tiers == &["1:map"]),
        "{err}"
    );
    assert!(err.to_string().contains("1:map"), "{err}");
    assert_eq!(cache.stats().computes, 0);

    // Wait: a producer stores it meanwhile.
    let (tiers, _) = consumer(&bucket, OnSharedMiss::Wait(Duration::from_secs(30)));
    let cache = Cache::builder("signed", BytesCodec).tiers(tiers).build();
    let key = cache.key_for("module");
    let producing = {
        let bucket = bucket.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let (producer, _) = producer(&bucket);
            block_on(producer.put(&key, &Origin::new(BytesCodec.kind(), "ci"), b"from ci"));
        })
    };
    let value = cache
        .get_or_compute("module", |_| -> Result<_, std::io::Error> {
            panic!("a waiting consumer computed")
        })
        .unwrap();
    producing.join().unwrap();
    assert_eq!(&value[..], b"from ci");
    assert_eq!(cache.stats().computes, 0);

    // Wait, bounded: nobody produces it, so it computes after the wait.
    let (tiers, _) = consumer(&bucket, OnSharedMiss::Wait(Duration::from_millis(300)));
    let cache = Cache::builder("signed", BytesCodec).tiers(tiers).build();
    let value = cache
        .get_or_compute("other", |_| {
            Ok::<_, std::io::Error>(warmcache_core::bytes::Bytes::from_static(b"here"))
        })
        .unwrap();
    assert_eq!(&value[..], b"here");
    let stats = cache.stats().tiers;
    assert_eq!((stats[1].lease_timeouts, stats[1].unpublished), (1, 1));
}
