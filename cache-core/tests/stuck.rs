//! Stuck, slow and failing tiers: timeouts bound blocking backends on a plain thread, `flush`
//! waits only for what was queued before it, read and write health are kept apart, and the
//! background queue is bounded by bytes and can wait instead of dropping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Gate, MapBackend};
use futures::executor::block_on;
use warmcache_conformance::{BlockingFaultyBackend, FaultConfig, FaultedOps, FaultyBackend};
use warmcache_core::{Backend, CacheKey, Integrity, Origin, Tier, Tiered};

fn key(n: u16) -> CacheKey {
    let mut bytes = [0u8; 32];
    bytes[..2].copy_from_slice(&n.to_le_bytes());
    CacheKey::from_bytes(bytes)
}

/// Fails the test when `f` has not returned within `limit`.
fn returns_within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not return within {limit:?}"))
}

#[test]
fn a_stuck_blocking_tier_is_bounded_by_its_timeout_on_a_plain_thread() {
    // The backend's blocking `get` never returns, like a read from a hung NFS server: the call
    // can only come back through the tier's timeout.
    let stuck: Arc<dyn Backend> = Arc::new(BlockingFaultyBackend::new(
        MapBackend::new(),
        FaultConfig {
            hang_rate: 1.0,
            ..FaultConfig::default()
        },
    ));
    let tiers = Arc::new(
        Tiered::builder()
            .tier(Tier::new(stuck).timeout(Duration::from_millis(100)))
            .build(),
    );
    let caller = Arc::clone(&tiers);
    // A plain thread, no Tokio runtime: the case that used to run the backend inline.
    let found = returns_within(Duration::from_secs(30), move || {
        assert!(tokio::runtime::Handle::try_current().is_err());
        block_on(caller.get(&key(1), 1)).is_some()
    });
    assert!(!found, "a hung tier answered");
    let stats = &tiers.stats()[0];
    assert_eq!((stats.timeouts, stats.hits), (1, 0), "{stats:?}");
}

#[test]
fn a_hung_blocking_background_tier_does_not_hang_flush() {
    let hung: Arc<dyn Backend> = Arc::new(BlockingFaultyBackend::new(
        MapBackend::new(),
        FaultConfig {
            hang_rate: 1.0,
            ..FaultConfig::default()
        },
    ));
    let tiers = Arc::new(
        Tiered::builder()
            .tier(
                Tier::new(hung)
                    .background(8)
                    .timeout(Duration::from_millis(100)),
            )
            .build(),
    );
    for n in 0..3 {
        block_on(tiers.put(&key(n), &Origin::new(1, "t"), b"v"));
    }
    let flushing = Arc::clone(&tiers);
    returns_within(Duration::from_secs(10), move || flushing.flush());
    let stats = &tiers.stats()[0];
    assert_eq!((stats.timeouts, stats.writes), (3, 0), "{stats:?}");
}

#[test]
fn flush_waits_for_writes_queued_before_it_not_for_an_idle_queue() {
    let slow: Arc<dyn Backend> = Arc::new(FaultyBackend::new(
        MapBackend::new(),
        FaultConfig {
            slow_rate: 1.0,
            delay: Duration::from_millis(20),
            ..FaultConfig::default()
        },
    ));
    let tiers = Arc::new(
        Tiered::builder()
            .tier(Tier::new(slow.clone()).background(4))
            .build(),
    );
    block_on(tiers.put(&key(0), &Origin::new(1, "t"), b"before"));
    // Steady traffic: the queue is never empty while this runs.
    let running = Arc::new(AtomicBool::new(true));
    let producer = {
        let (tiers, running) = (Arc::clone(&tiers), Arc::clone(&running));
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(3);
            let mut n = 1;
            while Instant::now() < until {
                block_on(tiers.put(&key(n), &Origin::new(1, "t"), b"v"));
                n = n % 1000 + 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            running.store(false, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    tiers.flush();
    assert!(
        running.load(Ordering::SeqCst),
        "flush returned only after the traffic stopped"
    );
    assert!(
        block_on(slow.contains(&key(0))).unwrap(),
        "a write queued before flush is missing"
    );
    producer.join().unwrap();
}

#[test]
fn write_failures_do_not_stop_reads_from_a_healthy_tier() {
    let map = MapBackend::new();
    let integrity = Integrity::plain();
    map.set_raw(&key(1), integrity.seal(&key(1), 1, "t", b"stored before"));
    let read_only_disk: Arc<dyn Backend> = Arc::new(FaultyBackend::new(
        map,
        FaultConfig {
            error_rate: 1.0,
            ops: FaultedOps::Writes,
            ..FaultConfig::default()
        },
    ));
    let tiers = Tiered::builder()
        .tier(Tier::new(read_only_disk).circuit_breaker(2, Duration::from_secs(60)))
        .build();
    for n in 10..20 {
        block_on(tiers.put(&key(n), &Origin::new(1, "t"), b"v"));
    }
    let stats = &tiers.stats()[0];
    assert!(stats.write_breaker_open, "{stats:?}");
    assert!(
        !stats.breaker_open,
        "write failures opened the read breaker"
    );
    let hit = block_on(tiers.get(&key(1), 1)).expect("a healthy read was skipped");
    assert_eq!(hit.payload(), b"stored before");
}

#[test]
fn the_background_queue_is_bounded_by_bytes() {
    let gate = Gate::closed();
    let remote = MapBackend::gated(gate.clone());
    let tiers = Tiered::builder()
        .tier(
            Tier::new(remote.clone())
                .background(100)
                .background_bytes(3000),
        )
        .build();
    for n in 0..5 {
        block_on(tiers.put(&key(n), &Origin::new(1, "t"), &[7; 1000]));
    }
    gate.open();
    tiers.flush();
    let stats = &tiers.stats()[0];
    assert_eq!(
        (stats.writes, stats.dropped_writes),
        (2, 3),
        "two entries of about 1.1 kB fit in 3000 bytes: {stats:?}"
    );
}

#[test]
fn a_queue_that_waits_when_full_never_drops() {
    let slow: Arc<dyn Backend> = Arc::new(FaultyBackend::new(
        MapBackend::new(),
        FaultConfig {
            slow_rate: 1.0,
            delay: Duration::from_millis(10),
            ..FaultConfig::default()
        },
    ));
    let tiers = Tiered::builder()
        .tier(Tier::new(slow.clone()).background(2).wait_when_full())
        .build();
    for n in 0..30 {
        block_on(tiers.put(&key(n), &Origin::new(1, "t"), b"v"));
    }
    tiers.flush();
    let stats = &tiers.stats()[0];
    assert_eq!((stats.writes, stats.dropped_writes), (30, 0), "{stats:?}");
    assert_eq!(block_on(slow.usage()).unwrap().entries, 30);
}

#[test]
fn a_large_put_gets_time_for_its_size_and_a_read_does_not() {
    // Every operation takes 300 ms; the tier's timeout is 100 ms.
    let slow: Arc<dyn Backend> = Arc::new(FaultyBackend::new(
        MapBackend::new(),
        FaultConfig {
            slow_rate: 1.0,
            delay: Duration::from_millis(300),
            ..FaultConfig::default()
        },
    ));
    let tiers = Tiered::builder()
        .tier(
            Tier::new(slow.clone())
                .timeout(Duration::from_millis(100))
                .min_write_rate(1 << 20),
        )
        .build();
    // 1 MiB at 1 MiB/s: one more second than the timeout, so the put lands.
    block_on(tiers.put(&key(1), &Origin::new(1, "t"), &vec![0; 1 << 20]));
    let stats = &tiers.stats()[0];
    assert_eq!((stats.writes, stats.timeouts), (1, 0), "{stats:?}");
    assert!(
        block_on(tiers.get(&key(1), 1)).is_none(),
        "a read outlived its timeout"
    );
    assert_eq!(tiers.stats()[0].timeouts, 1);
}
