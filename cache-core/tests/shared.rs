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
