//! The cache front: single-flight for sync and async callers, failures and panics, live tier.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::Duration;

use common::MapBackend;
use warmcache_conformance::{FaultConfig, FaultyBackend};
use warmcache_core::bytes::Bytes;
use warmcache_core::{BytesCodec, Cache, ComputeError, Stats, Tier, Tiered};

fn cache() -> Arc<Cache<Bytes, BytesCodec>> {
    let tiers = Tiered::builder().tier(Tier::new(MapBackend::new())).build();
    Arc::new(Cache::builder("test", BytesCodec).tiers(tiers).build())
}

fn slow_ok(input: &u32) -> Result<Bytes, std::io::Error> {
    std::thread::sleep(Duration::from_millis(100));
    Ok(Bytes::from(input.to_string()))
}

fn slow_fail(input: &u32) -> Result<Bytes, std::io::Error> {
    std::thread::sleep(Duration::from_millis(100));
    Err(std::io::Error::other(format!("invalid module {input}")))
}

fn slow_panic(_input: &u32) -> Result<Bytes, std::io::Error> {
    std::thread::sleep(Duration::from_millis(100));
    panic!("compiler crashed");
}

fn run_threads(
    cache: &Arc<Cache<Bytes, BytesCodec>>,
    n: usize,
    f: fn(&u32) -> Result<Bytes, std::io::Error>,
) -> Vec<std::thread::Result<Result<Bytes, ComputeError>>> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let cache = Arc::clone(cache);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_or_compute(&1u32, f)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join()).collect()
}

#[test]
fn concurrent_sync_callers_share_one_compute() {
    let cache = cache();
    let results = run_threads(&cache, 32, slow_ok);
    for r in results {
        assert_eq!(r.unwrap().unwrap(), Bytes::from("1"));
    }
    let stats = cache.stats();
    assert_eq!(stats.computes, 1);
    assert!(stats.waits >= 1);
}

#[test]
fn a_failing_compute_reaches_every_waiter_and_is_not_cached() {
    let cache = cache();
    let results = run_threads(&cache, 16, slow_fail);
    for r in results {
        let err = r.unwrap().unwrap_err();
        assert!(err.to_string().contains("invalid module 1"), "{err}");
        assert!(err.downcast_ref::<std::io::Error>().is_some());
    }
    let stats = cache.stats();
    assert!(stats.compute_errors >= 1);
    assert!(
        stats.computes < 16,
        "waiters recomputed instead of sharing the error"
    );
    // Not cached: a later successful compute runs.
    assert!(cache.get_or_compute(&1u32, slow_ok).is_ok());
}

#[test]
fn a_panicking_compute_releases_waiters_and_the_key() {
    let cache = cache();
    let results = run_threads(&cache, 8, slow_panic);
    let panicked = results.iter().filter(|r| r.is_err()).count();
    let told = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(ComputeError::Panicked { .. }))))
        .count();
    assert!(panicked >= 1, "the leader's panic was swallowed");
    assert_eq!(panicked + told, 8);
    assert!(cache.stats().compute_panics >= 1);
    assert_eq!(
        cache.get_or_compute(&1u32, slow_ok).unwrap(),
        Bytes::from("1")
    );
}

#[test]
fn concurrent_async_callers_share_one_compute() {
    let cache = cache();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move { cache.get_or_compute_async(&1u32, slow_ok).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap() == &Bytes::from("1"))
    );
    assert_eq!(cache.stats().computes, 1);
}

static KEY2_DONE: Mutex<bool> = Mutex::new(false);
static KEY2_CV: Condvar = Condvar::new();
static KEY1_STARTED: AtomicBool = AtomicBool::new(false);

fn wait_for_key2(_input: &u32) -> Result<Bytes, std::io::Error> {
    KEY1_STARTED.store(true, Ordering::SeqCst);
    let mut done = KEY2_DONE.lock().unwrap();
    while !*done {
        done = KEY2_CV.wait(done).unwrap();
    }
    Ok(Bytes::from_static(b"one"))
}

#[test]
fn other_keys_are_not_delayed_by_a_running_compute() {
    let cache = cache();
    let c = Arc::clone(&cache);
    // Key 1's compute cannot finish until key 2 is done: if key 2 waited on key 1, this would
    // deadlock.
    let key1 = std::thread::spawn(move || c.get_or_compute(&1u32, wait_for_key2));
    while !KEY1_STARTED.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let two = cache.get_or_compute(&2u32, |i| {
        Ok::<_, std::io::Error>(Bytes::from(i.to_string()))
    });
    assert_eq!(two.unwrap(), Bytes::from("2"));
    *KEY2_DONE.lock().unwrap() = true;
    KEY2_CV.notify_all();
    assert_eq!(key1.join().unwrap().unwrap(), Bytes::from_static(b"one"));
}

#[test]
fn vouched_keys_work_with_closures() {
    let cache = cache();
    let wasm = vec![0u8, 97, 115, 109];
    let key = cache.key_builder().bytes(&wasm).finish();
    let v = cache
        .get_or_compute_vouched(key, || Ok::<_, std::io::Error>(Bytes::from(wasm.clone())))
        .unwrap();
    assert_eq!(v.len(), 4);
    let again = cache
        .get_or_compute_vouched(key, || Err::<Bytes, _>(std::io::Error::other("not called")))
        .unwrap();
    assert_eq!(again, v);
}

#[test]
fn live_tier_is_bounded() {
    let cache: Cache<Bytes, BytesCodec> =
        Cache::builder("live", BytesCodec).live_capacity(2).build();
    for i in 0..10u32 {
        cache
            .get_or_compute(&i, |i| Ok::<_, std::io::Error>(Bytes::from(i.to_string())))
            .unwrap();
    }
    assert!(cache.stats().live_entries <= 2);
}

#[test]
fn every_tier_down_still_computes() {
    let down = Arc::new(FaultyBackend::new(
        MapBackend::new(),
        FaultConfig::default(),
    ));
    down.set_down(true);
    let tiers = Tiered::builder().tier(Tier::new(down)).build();
    let cache: Cache<Bytes, BytesCodec> = Cache::builder("down", BytesCodec).tiers(tiers).build();
    let v = cache.get_or_compute(&5u32, |i| {
        Ok::<_, std::io::Error>(Bytes::from(i.to_string()))
    });
    assert_eq!(v.unwrap(), Bytes::from("5"));
}

#[test]
fn stats_round_trip_through_serde() {
    let cache = cache();
    cache.get_or_compute(&3u32, slow_ok).unwrap();
    let stats = cache.stats();
    let bytes = postcard::to_allocvec(&stats).unwrap();
    let back: Stats = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, stats);
    assert_eq!(back.tiers.len(), 1);
}

#[test]
fn a_failed_computation_is_remembered_for_its_lifetime_and_shared_through_the_tier() {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    fn failing(input: &u32) -> Result<Bytes, std::io::Error> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::other(format!("invalid module {input}")))
    }
    let lifetime = Duration::from_millis(600);
    let backend = MapBackend::new();
    let over = |backend: &Arc<MapBackend>| {
        let tiers = Tiered::builder()
            .tier(Tier::new(
                Arc::clone(backend) as Arc<dyn warmcache_core::Backend>
            ))
            .build();
        Cache::builder("test", BytesCodec)
            .tiers(tiers)
            .remember_failures(lifetime)
            .build()
    };
    let cache = over(&backend);
    let first = cache.get_or_compute(&1u32, failing).unwrap_err();
    assert!(matches!(first, ComputeError::Failed { .. }), "{first}");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);

    // Another cache over the same tier (another process, in effect) gets the failure without
    // computing, and so does this one.
    let other = over(&backend);
    for cache in [&other, &cache] {
        let err = cache.get_or_compute(&1u32, failing).unwrap_err();
        let ComputeError::Remembered { message, age, .. } = &err else {
            panic!("expected a remembered failure, got {err}");
        };
        assert!(message.contains("invalid module 1"), "{message}");
        assert!(*age < lifetime);
        assert!(err.to_string().contains("remembered"), "{err}");
        let stats = cache.stats();
        assert_eq!(stats.remembered_failures, 1);
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(other.stats().computes, 0);
    // Another input is not affected.
    assert!(matches!(
        cache.get_or_compute(&2u32, failing),
        Err(ComputeError::Failed { .. })
    ));
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);

    // Once its lifetime has passed, the computation runs again.
    std::thread::sleep(lifetime + Duration::from_millis(50));
    assert!(matches!(
        cache.get_or_compute(&1u32, failing),
        Err(ComputeError::Failed { .. })
    ));
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);

    // Without the setting, nothing is remembered.
    let plain = Cache::builder("test", BytesCodec)
        .tiers(
            Tiered::builder()
                .tier(Tier::new(
                    Arc::clone(&backend) as Arc<dyn warmcache_core::Backend>
                ))
                .build(),
        )
        .build();
    assert!(matches!(
        plain.get_or_compute(&1u32, failing),
        Err(ComputeError::Failed { .. })
    ));
    assert_eq!(RUNS.load(Ordering::SeqCst), 4);
    assert_eq!(plain.stats().remembered_failures, 0);
}
