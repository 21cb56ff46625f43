//! Tests of the tests: a correct reference backend passes the whole suite, and deliberately
//! broken backends are each reported as failing the checks that cover their defect.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use warmcache_conformance::{Harness, run_named};
use warmcache_core::backend::page_from_sorted;
use warmcache_core::backend::{Lease, maybe_spawn_blocking};
use warmcache_core::{
    Backend, CacheKey, Capabilities, Context, Error, KeyInfo, ListPage, Op, Result, Usage,
    async_trait,
};

/// Which defect a [`MapBackend`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    None,
    /// Silently drops every put whose key's first byte is odd.
    LosesWrites,
    /// Writes the first half of a value, pauses, then the whole value.
    TearsValues,
    /// `delete` does nothing.
    IgnoresDelete,
    /// Claims a capacity but never evicts.
    Overfills,
    /// Claims persistence but forgets everything on reopen.
    ForgetsOnReopen,
    /// Lists keys in insertion order instead of key order, and misreports sizes.
    ListsWrongly,
    /// Grants every lease asked for, held or not.
    LeasesUnguarded,
    /// An abandoned lease stays held for a day, whatever its ttl.
    LeasesNeverExpire,
    /// `release` leaves the lease held.
    ReleaseKeepsLease,
    /// `renew` does not extend the lease.
    RenewIgnored,
}

/// Held leases by key: the holder's id and the deadline.
type Leases = Arc<Mutex<HashMap<CacheKey, (u64, Instant)>>>;

#[derive(Debug)]
struct MapBackend {
    map: Mutex<BTreeMap<CacheKey, Bytes>>,
    defect: Defect,
    capacity: Option<u64>,
    leases: Leases,
    next_lease: AtomicU64,
}

#[derive(Debug)]
struct MapLease {
    leases: Leases,
    key: CacheKey,
    id: u64,
    ttl: Duration,
    defect: Defect,
}

#[async_trait]
impl Lease for MapLease {
    async fn renew(&self) -> Result<()> {
        if self.defect != Defect::RenewIgnored
            && let Some(held) = self.leases.lock().get_mut(&self.key)
            && held.0 == self.id
        {
            held.1 = Instant::now() + self.ttl;
        }
        Ok(())
    }

    async fn release(&self) -> Result<()> {
        let mut leases = self.leases.lock();
        if self.defect != Defect::ReleaseKeepsLease
            && leases.get(&self.key).is_some_and(|held| held.0 == self.id)
        {
            leases.remove(&self.key);
        }
        Ok(())
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.ttl / 3)
    }
}

impl MapBackend {
    fn new(defect: Defect) -> Self {
        let capacity = match defect {
            Defect::Overfills => Some(8 << 20),
            _ => None,
        };
        Self {
            map: Mutex::new(BTreeMap::new()),
            defect,
            capacity,
            leases: Arc::default(),
            next_lease: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl Backend for MapBackend {
    fn name(&self) -> &str {
        "map"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_persistent(self.defect == Defect::ForgetsOnReopen)
            .with_capacity(self.capacity)
            .with_max_value_size(self.capacity)
            .with_coordinates(true)
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        Ok(self.map.lock().get(key).cloned())
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        if let Some(cap) = self.capacity
            && value.len() as u64 > cap
        {
            return Err(Error::Capacity {
                context: Context::with_key("map", Op::Put, key),
                size: value.len() as u64,
                limit: cap,
            });
        }
        match self.defect {
            Defect::LosesWrites if key.as_bytes()[0] % 2 == 1 => {}
            Defect::TearsValues if value.len() > 1 => {
                self.map.lock().insert(*key, value.slice(..value.len() / 2));
                futures_timer_sleep(Duration::from_micros(200)).await;
                self.map.lock().insert(*key, value);
            }
            _ => {
                self.map.lock().insert(*key, value);
            }
        }
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<()> {
        if self.defect != Defect::IgnoresDelete {
            self.map.lock().remove(key);
        }
        Ok(())
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.map.lock().contains_key(key))
    }

    async fn clear(&self) -> Result<()> {
        self.map.lock().clear();
        Ok(())
    }

    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        let mut all: Vec<KeyInfo> = self
            .map
            .lock()
            .iter()
            .map(|(k, v)| KeyInfo {
                key: *k,
                size: v.len() as u64,
            })
            .collect();
        if self.defect == Defect::ListsWrongly {
            all.reverse();
            for e in &mut all {
                e.size += 1;
            }
            return Ok(ListPage {
                entries: all.into_iter().take(limit).collect(),
                next: None,
            });
        }
        Ok(page_from_sorted(&all, after, limit))
    }

    async fn usage(&self) -> Result<Usage> {
        let map = self.map.lock();
        Ok(Usage {
            entries: map.len() as u64,
            bytes: map.values().map(|v| v.len() as u64).sum(),
        })
    }

    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        _holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        let now = Instant::now();
        let mut leases = self.leases.lock();
        if self.defect != Defect::LeasesUnguarded
            && leases.get(key).is_some_and(|(_, until)| *until > now)
        {
            return Ok(None);
        }
        let id = self.next_lease.fetch_add(1, Ordering::Relaxed);
        let lives = if self.defect == Defect::LeasesNeverExpire {
            Duration::from_secs(86_400)
        } else {
            ttl
        };
        leases.insert(*key, (id, now + lives));
        Ok(Some(Box::new(MapLease {
            leases: Arc::clone(&self.leases),
            key: *key,
            id,
            ttl,
            defect: self.defect,
        })))
    }
}

async fn futures_timer_sleep(d: Duration) {
    // The pause must let readers on other threads run; a real sleep guarantees that.
    let _ = maybe_spawn_blocking(move || std::thread::sleep(d)).await;
}

fn harness(defect: Defect) -> impl Harness {
    move |_dir: &Path| -> Result<Arc<dyn Backend>> { Ok(Arc::new(MapBackend::new(defect))) }
}

fn assert_fails(defect: Defect, checks: &[&str]) {
    let h = harness(defect);
    for check in checks {
        let outcome = run_named(&h, check);
        assert!(
            outcome.is_err(),
            "the suite did not catch {defect:?} in check {check}"
        );
    }
}

fn reference(_dir: &Path) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(MapBackend::new(Defect::None)))
}

// The correct reference backend passes every check.
warmcache_conformance::backend_tests!(reference);

#[test]
fn catches_lost_writes() {
    assert_fails(
        Defect::LosesWrites,
        &[
            "round_trip_sizes",
            "many_small_keys",
            "list_and_usage_consistent",
            "front_invalidation",
        ],
    );
}

#[test]
fn catches_torn_values() {
    assert_fails(
        Defect::TearsValues,
        &["concurrent_writers_one_key", "readers_during_overwrites"],
    );
}

#[test]
fn catches_ignored_deletes() {
    assert_fails(
        Defect::IgnoresDelete,
        &["delete_present_and_missing", "list_and_usage_consistent"],
    );
}

#[test]
fn catches_capacity_overrun() {
    assert_fails(Defect::Overfills, &["capacity_bound"]);
}

#[test]
fn catches_false_persistence() {
    assert_fails(Defect::ForgetsOnReopen, &["persistence_across_reopen"]);
}

#[test]
fn catches_wrong_listing() {
    assert_fails(Defect::ListsWrongly, &["list_and_usage_consistent"]);
}

#[test]
fn catches_broken_leases() {
    assert_fails(Defect::LeasesUnguarded, &["lease_exclusive"]);
    assert_fails(Defect::LeasesNeverExpire, &["lease_abandoned_expires"]);
    assert_fails(Defect::ReleaseKeepsLease, &["lease_released_is_gone"]);
    assert_fails(Defect::RenewIgnored, &["lease_renewal_keeps_it"]);
}

#[test]
fn run_all_reports_every_check() {
    let outcomes = warmcache_conformance::run_all(&harness(Defect::IgnoresDelete));
    assert_eq!(outcomes.len(), warmcache_conformance::CHECKS.len());
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    assert!(failed.contains(&"delete_present_and_missing"), "{failed:?}");
    assert!(!failed.contains(&"missing_key"), "{failed:?}");
}
