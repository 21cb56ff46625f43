//! `Tiered`: promotion, verification, read-only tiers, background writes, timeouts, breakers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{Gate, MapBackend};
use futures::executor::block_on;
use warmcache_conformance::{FaultConfig, FaultyBackend};
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, Integrity, Origin, Tier, Tiered};

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn sealed(integrity: &Integrity, k: &CacheKey, payload: &[u8]) -> Bytes {
    integrity.seal(k, 1, "test", payload)
}

#[test]
fn lower_tier_hit_is_promoted() {
    let fast = MapBackend::new();
    let slow = MapBackend::new();
    let tiers = Tiered::builder()
        .tier(Tier::new(fast.clone()))
        .tier(Tier::new(slow.clone()))
        .build();
    slow.set_raw(&key(1), sealed(&Integrity::plain(), &key(1), b"v"));
    let hit = block_on(tiers.get(&key(1), 1)).unwrap();
    assert_eq!(hit.tier(), Some(1));
    assert_eq!(hit.payload(), b"v");
    assert!(fast.has(&key(1)), "not promoted");
    let hit = block_on(tiers.get(&key(1), 1)).unwrap();
    assert_eq!(hit.tier(), Some(0));
    let stats = tiers.stats();
    assert_eq!(stats[0].promotions, 1);
    assert_eq!(stats[0].hits, 1);
    assert_eq!(stats[0].misses, 1);
    assert_eq!(stats[1].hits, 1);
}

#[test]
fn corrupt_entry_is_deleted_and_a_lower_good_copy_wins() {
    let fast = MapBackend::new();
    let slow = MapBackend::new();
    let tiers = Tiered::builder()
        .tier(Tier::new(fast.clone()))
        .tier(Tier::new(slow.clone()))
        .build();
    let good = sealed(&Integrity::plain(), &key(2), b"payload");
    let mut bad = good.to_vec();
    bad[3] ^= 1;
    fast.set_raw(&key(2), Bytes::from(bad));
    slow.set_raw(&key(2), good.clone());
    let hit = block_on(tiers.get(&key(2), 1)).unwrap();
    assert_eq!(hit.tier(), Some(1));
    assert_eq!(
        fast.raw(&key(2)),
        Some(good),
        "bad copy not replaced by the good one"
    );
    assert_eq!(tiers.stats()[0].corrupt, 1);
}

#[test]
fn read_only_tier_is_never_written_nor_cleaned() {
    let ro = MapBackend::new();
    let rw = MapBackend::new();
    let tiers = Tiered::builder()
        .tier(Tier::new(ro.clone()).read_only())
        .tier(Tier::new(rw.clone()))
        .build();
    block_on(tiers.put(&key(3), &Origin::new(1, "t"), b"x"));
    assert!(!ro.has(&key(3)));
    assert!(rw.has(&key(3)));
    ro.set_raw(&key(4), Bytes::from_static(b"garbage"));
    assert!(block_on(tiers.get(&key(4), 1)).is_none());
    assert!(ro.has(&key(4)), "a read-only tier was modified");
    assert_eq!(tiers.stats()[0].corrupt, 1);
}

#[test]
fn background_writes_do_not_hold_the_caller_and_flush_waits() {
    let gate = Gate::closed();
    let remote = MapBackend::gated(gate.clone());
    let local = MapBackend::new();
    let tiers = Tiered::builder()
        .tier(Tier::new(local.clone()))
        .tier(Tier::new(remote.clone()).background(8))
        .build();
    // The remote put blocks until the gate opens; put still returns.
    block_on(tiers.put(&key(5), &Origin::new(1, "t"), b"v"));
    assert!(local.has(&key(5)));
    assert!(!remote.has(&key(5)));
    assert_eq!(tiers.pending_writes(), 1);
    gate.open();
    tiers.flush();
    assert!(remote.has(&key(5)));
    assert_eq!(tiers.pending_writes(), 0);
    assert_eq!(tiers.stats()[1].writes, 1);
}

#[test]
fn a_full_queue_drops_and_counts() {
    let gate = Gate::closed();
    let remote = MapBackend::gated(gate.clone());
    let tiers = Tiered::builder()
        .tier(Tier::new(remote.clone()).background(1))
        .build();
    for n in 0..4 {
        block_on(tiers.put(&key(10 + n), &Origin::new(1, "t"), b"v"));
    }
    gate.open();
    tiers.flush();
    let stats = &tiers.stats()[0];
    assert!(stats.dropped_writes >= 2, "{stats:?}");
    assert_eq!(stats.writes + stats.dropped_writes, 4);
}

#[test]
fn a_hanging_tier_times_out_as_a_miss() {
    let hanging = Arc::new(FaultyBackend::new(
        MapBackend::new(),
        FaultConfig {
            hang_rate: 1.0,
            ..FaultConfig::default()
        },
    ));
    let good = MapBackend::new();
    let tiers = Tiered::builder()
        .tier(Tier::new(hanging).timeout(Duration::from_millis(30)))
        .tier(Tier::new(good.clone()))
        .build();
    good.set_raw(&key(6), sealed(&Integrity::plain(), &key(6), b"v"));
    let hit = block_on(tiers.get(&key(6), 1)).unwrap();
    assert_eq!(hit.tier(), Some(1));
    // The promotion into the hanging tier also times out instead of hanging.
    let stats = tiers.stats();
    assert_eq!(stats[0].timeouts, 2, "{:?}", stats[0]);
    assert_eq!(stats[0].errors, 1);
    assert_eq!(stats[0].write_errors, 1);
}

#[test]
fn circuit_breaker_opens_skips_and_recovers() {
    let inner = MapBackend::new();
    let faulty = Arc::new(FaultyBackend::new(inner.clone(), FaultConfig::default()));
    let tiers = Tiered::builder()
        .tier(Tier::new(faulty.clone()).circuit_breaker(3, Duration::from_millis(50)))
        .build();
    inner.set_raw(&key(7), sealed(&Integrity::plain(), &key(7), b"v"));
    faulty.set_down(true);
    for _ in 0..3 {
        assert!(block_on(tiers.get(&key(7), 1)).is_none());
    }
    assert!(tiers.stats()[0].breaker_open);
    let gets_before = inner.gets.load(std::sync::atomic::Ordering::SeqCst);
    assert!(block_on(tiers.get(&key(7), 1)).is_none());
    assert_eq!(tiers.stats()[0].skipped, 1);
    assert_eq!(
        inner.gets.load(std::sync::atomic::Ordering::SeqCst),
        gets_before,
        "an open breaker still called the backend"
    );
    faulty.set_down(false);
    std::thread::sleep(Duration::from_millis(80));
    assert!(
        block_on(tiers.get(&key(7), 1)).is_some(),
        "the probe after cool-down failed"
    );
    assert!(!tiers.stats()[0].breaker_open);
}

#[test]
fn keyed_stack_rejects_forgeries() {
    let store = MapBackend::new();
    let integrity = Integrity::keyed(b"the shared secret, 32 bytes long");
    let tiers = Tiered::builder()
        .tier(Tier::new(store.clone()))
        .integrity(integrity.clone())
        .build();
    // A plain entry, one sealed with another secret, and a valid entry copied to another key.
    store.set_raw(&key(8), sealed(&Integrity::plain(), &key(8), b"evil"));
    store.set_raw(
        &key(9),
        sealed(&Integrity::keyed(b"another secret"), &key(9), b"evil"),
    );
    store.set_raw(&key(11), sealed(&integrity, &key(10), b"valid elsewhere"));
    for k in [key(8), key(9), key(11)] {
        assert!(block_on(tiers.get(&k, 1)).is_none());
        assert!(!store.has(&k), "forged entry not removed");
    }
    assert_eq!(tiers.stats()[0].forged, 3);
    store.set_raw(&key(12), sealed(&integrity, &key(12), b"genuine"));
    assert!(block_on(tiers.get(&key(12), 1)).is_some());
}

#[test]
fn every_tier_down_is_only_misses() {
    let down = Arc::new(FaultyBackend::new(
        MapBackend::new(),
        FaultConfig::default(),
    ));
    down.set_down(true);
    let tiers = Tiered::builder()
        .tier(Tier::new(down.clone() as Arc<dyn Backend>))
        .build();
    block_on(tiers.put(&key(13), &Origin::new(1, "t"), b"v"));
    assert!(block_on(tiers.get(&key(13), 1)).is_none());
    let stats = &tiers.stats()[0];
    assert_eq!((stats.errors, stats.write_errors), (1, 1));
}

#[test]
fn compressed_tier_stores_zstd_and_promotes_plain() {
    use warmcache_core::{Compression, inspect};
    let local = MapBackend::new();
    let remote = MapBackend::new();
    let tiers = Tiered::builder()
        .tier(Tier::new(local.clone()))
        .tier(Tier::new(remote.clone()).compression(Compression::Zstd { level: 3 }))
        .build();
    let payload = b"a compiled artifact compresses well ".repeat(1000);
    block_on(tiers.put(&key(20), &Origin::new(1, "t"), &payload));
    let stored_remote = remote.raw(&key(20)).unwrap();
    let stored_local = local.raw(&key(20)).unwrap();
    assert!(inspect(&stored_remote).unwrap().compressed);
    assert!(!inspect(&stored_local).unwrap().compressed);
    assert!(stored_remote.len() < stored_local.len() / 10);
    // A cold local tier is filled from the compressed remote copy, uncompressed.
    block_on(local.delete(&key(20))).unwrap();
    let hit = block_on(tiers.get(&key(20), 1)).unwrap();
    assert_eq!(hit.tier(), Some(1));
    assert_eq!(hit.payload(), &payload[..]);
    let promoted = local.raw(&key(20)).unwrap();
    assert!(!inspect(&promoted).unwrap().compressed);
    assert_eq!(promoted.len(), stored_local.len());
}
