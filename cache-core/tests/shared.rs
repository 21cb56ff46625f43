//! A tier shared by a fleet: nodes with different secrets never destroy each other's entries,
//! a rotation reads what the previous secret sealed, short secrets are refused, and a shared
//! tier without a secret is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::MapBackend;
use futures::executor::block_on;
use warmcache_core::{Integrity, MIN_SECRET_LEN, Origin, Tier, Tiered};

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
