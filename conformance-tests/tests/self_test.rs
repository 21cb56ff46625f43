//! Tests of the tests: a correct reference backend passes the whole suite (unbounded, and bounded
//! to a small capacity), and deliberately broken backends, each with one bug a real author could
//! make, are each reported as failing the checks that exist to catch that bug.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use warmcache_conformance::{Harness, WithCapacity, run_named};
use warmcache_core::backend::page_from_sorted;
use warmcache_core::backend::{Lease, Limits, maybe_spawn_blocking};
use warmcache_core::{
    Backend, CacheKey, Capabilities, KeyInfo, ListPage, Result, Usage, async_trait,
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
    /// `release` removes whatever lease the key has, its own or a newer holder's.
    ReleaseFreesAnyLease,
    /// Leases last their ttl rounded down to whole seconds (1.5 s becomes 1 s).
    LeaseWholeSeconds,
    /// `renew` does not extend the lease.
    RenewIgnored,
    /// Eviction takes entries out of the accounting but leaves them stored and readable, so
    /// memory grows without bound while `usage` looks fine.
    ForgetfulEviction,
    /// Indexes entries by the first 8 bytes of the key.
    PrefixIndex,
    /// After an overwrite, 2% of reads return the previous value (a stale read cache).
    StaleReads,
    /// Deleting leaves a tombstone that `get` returns as an empty value.
    DeletedReadsEmpty,
    /// `list` includes the `after` key itself.
    ListAfterInclusive,
    /// `list` with a limit of 0 returns an empty page with a `next`.
    ListLimitZeroEmpty,
    /// `list` with a limit of 0 returns one entry, but the greatest key instead of the smallest.
    ListLimitZeroLargest,
    /// `get_tail` returns one byte too many (an off-by-one in a ranged read).
    TailOffByOne,
    /// Not a defect: evicts once a quarter of its capacity is used (the guide allows early
    /// eviction).
    EvictsEarly,
    /// `get` of a present key takes the state lock a second time: a deadlock.
    GetDeadlocks,
    /// `list` reports the size of the first value ever written under a key.
    ListStaleSizes,
    /// `usage` adds an overwrite's bytes without taking the old value's off.
    DoubleCountsOverwrite,
    /// The usage counters are updated with a read-modify-write race.
    RacyAccounting,
    /// When full, evicts the value just put.
    EvictsNewest,
    /// A put over `max_value_size` returns `Ok` and stores nothing.
    OversizeDroppedSilently,
    /// Its futures need a Tokio runtime (it calls Tokio's blocking pool directly).
    TokioOnly,
    /// `shrink_to` evicts by write time only: reads do not count as use.
    ShrinkIgnoresReads,
    /// `clear` empties the map but not the usage counters.
    ClearLeavesUsage,
    /// `contains` answers from a set of every key ever written.
    ContainsEverWritten,
    /// Claims persistence; puts survive a reopen but deletes do not.
    ForgetsDeletesOnReopen,
    /// Evicts only once a quarter over its capacity, and declares no slack.
    UndeclaredSlack,
    /// The same eviction, with that slack declared: correct.
    DeclaredSlack,
}

/// Held leases by key: the holder's id and the deadline.
type Leases = Arc<Mutex<HashMap<CacheKey, (u64, Instant)>>>;

/// The stored state of a map backend: what a "disk" keeps across reopen for the persistent
/// defects.
#[derive(Debug, Default, Clone)]
struct State {
    map: BTreeMap<CacheKey, Entry>,
    /// The accounting `usage` reports (kept apart from the map, as real backends do).
    entries: u64,
    bytes: u64,
    clock: u64,
    ever: HashSet<CacheKey>,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    first_len: u64,
    previous: Option<Bytes>,
    used: u64,
    /// Still counted in the accounting.
    counted: bool,
    tombstone: bool,
}

/// The "disks" of persistent map backends, by directory.
static DISKS: LazyLock<Mutex<HashMap<PathBuf, State>>> = LazyLock::new(Mutex::default);

#[derive(Debug)]
struct MapBackend {
    state: Mutex<State>,
    defect: Defect,
    limits: Option<Limits>,
    disk: Option<PathBuf>,
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
            && (self.defect == Defect::ReleaseFreesAnyLease
                || leases.get(&self.key).is_some_and(|held| held.0 == self.id))
        {
            leases.remove(&self.key);
        }
        Ok(())
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.ttl / 3)
    }
}

const DEFECT_CAPACITY: u64 = 8 << 20;

impl MapBackend {
    fn new(defect: Defect, dir: &Path, capacity: Option<u64>) -> Self {
        let capacity = capacity.or(match defect {
            Defect::Overfills
            | Defect::ForgetfulEviction
            | Defect::EvictsNewest
            | Defect::OversizeDroppedSilently
            | Defect::UndeclaredSlack
            | Defect::DeclaredSlack => Some(DEFECT_CAPACITY),
            _ => None,
        });
        let limits = capacity.map(|c| Limits::new("map", c, None, None).unwrap());
        let disk = matches!(
            defect,
            Defect::ForgetsOnReopen | Defect::ForgetsDeletesOnReopen
        )
        .then(|| dir.to_path_buf());
        let state = match (&disk, defect) {
            (Some(dir), Defect::ForgetsDeletesOnReopen) => {
                DISKS.lock().get(dir).cloned().unwrap_or_default()
            }
            _ => State::default(),
        };
        Self {
            state: Mutex::new(state),
            defect,
            limits,
            disk,
            leases: Arc::default(),
            next_lease: AtomicU64::new(0),
        }
    }

    /// The key the map indexes by.
    fn slot(&self, key: &CacheKey) -> CacheKey {
        if self.defect != Defect::PrefixIndex {
            return *key;
        }
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&key.as_bytes()[..8]);
        CacheKey::from_bytes(bytes)
    }

    fn live<'a>(&self, state: &'a State, key: &CacheKey) -> Option<&'a Entry> {
        state.map.get(&self.slot(key)).filter(|e| !e.tombstone)
    }

    /// Changes the accounting by `entries` and `bytes`.
    fn account(state: &mut State, entries: i64, bytes: i64) {
        state.entries = state.entries.wrapping_add_signed(entries);
        state.bytes = state.bytes.wrapping_add_signed(bytes);
    }

    fn evict(&self, state: &mut State, just_put: CacheKey) {
        let Some(limits) = self.limits else { return };
        if self.defect == Defect::Overfills {
            return;
        }
        let threshold = match self.defect {
            Defect::UndeclaredSlack | Defect::DeclaredSlack => {
                limits.capacity() + limits.capacity() / 4
            }
            Defect::EvictsEarly => limits.capacity() / 4,
            _ => limits.capacity(),
        };
        while state.bytes > threshold {
            let victim = if self.defect == Defect::EvictsNewest {
                Some(just_put).filter(|k| state.map.get(k).is_some_and(|e| e.counted))
            } else {
                None
            }
            .or_else(|| {
                state
                    .map
                    .iter()
                    .filter(|(k, e)| e.counted && **k != just_put)
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| *k)
            });
            let Some(victim) = victim else { break };
            let len = state.map[&victim].value.len() as i64;
            if self.defect == Defect::ForgetfulEviction {
                if let Some(e) = state.map.get_mut(&victim) {
                    e.counted = false;
                }
            } else {
                state.map.remove(&victim);
            }
            Self::account(state, -1, -len);
        }
    }

    /// Writes the entry just put to the "disk" of a persistent variant (deletes never reach
    /// it: the defect of [`Defect::ForgetsDeletesOnReopen`]).
    fn save_put(&self, state: &State, slot: CacheKey) {
        if let Some(dir) = &self.disk
            && let Some(entry) = state.map.get(&slot)
        {
            let mut disks = DISKS.lock();
            let disk = disks.entry(dir.clone()).or_default();
            disk.map.insert(slot, entry.clone());
            disk.entries = state.entries;
            disk.bytes = state.bytes;
        }
    }

    fn tokio_check(&self) {
        if self.defect == Defect::TokioOnly {
            // What `tokio::task::spawn_blocking` does outside a runtime.
            assert!(
                tokio::runtime::Handle::try_current().is_ok(),
                "there is no reactor running, must be called from the context of a Tokio 1.x runtime"
            );
        }
    }
}

#[async_trait]
impl Backend for MapBackend {
    fn name(&self) -> &str {
        "map"
    }

    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::new()
            .with_persistent(self.disk.is_some())
            .with_coordinates(true);
        match self.limits {
            Some(limits) => caps
                .with_capacity(Some(limits.capacity()))
                .with_max_value_size(Some(limits.max_value()))
                .with_capacity_slack(if self.defect == Defect::DeclaredSlack {
                    limits.capacity() / 4
                } else {
                    0
                }),
            None => caps,
        }
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        self.tokio_check();
        let mut state = self.state.lock();
        state.clock += 1;
        let now = state.clock;
        let slot = self.slot(key);
        let defect = self.defect;
        let Some(entry) = state.map.get_mut(&slot) else {
            return Ok(None);
        };
        if defect == Defect::GetDeadlocks {
            // parking_lot's mutex is not reentrant: this never returns.
            let _again = self.state.lock();
        }
        if defect != Defect::ShrinkIgnoresReads {
            entry.used = now;
        }
        if entry.tombstone {
            return Ok((defect == Defect::DeletedReadsEmpty).then(Bytes::new));
        }
        if defect == Defect::StaleReads
            && let Some(previous) = &entry.previous
            && rand::random_ratio(1, 50)
        {
            return Ok(Some(previous.clone()));
        }
        Ok(Some(entry.value.clone()))
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        self.tokio_check();
        if let Some(limits) = self.limits
            && let Err(e) = limits.check("map", key, value.len() as u64)
        {
            return match self.defect {
                Defect::OversizeDroppedSilently => Ok(()),
                _ => Err(e),
            };
        }
        match self.defect {
            Defect::LosesWrites if key.as_bytes()[0] % 2 == 1 => return Ok(()),
            Defect::TearsValues if value.len() > 1 => {
                self.store(key, value.slice(..value.len() / 2));
                futures_timer_sleep(Duration::from_micros(200)).await;
            }
            _ => {}
        }
        self.store(key, value);
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<()> {
        self.tokio_check();
        if self.defect == Defect::IgnoresDelete {
            return Ok(());
        }
        let mut state = self.state.lock();
        let slot = self.slot(key);
        let removed = match self.defect {
            Defect::DeletedReadsEmpty => state.map.get_mut(&slot).and_then(|e| {
                let was = (!e.tombstone && e.counted).then_some(e.value.len());
                e.tombstone = true;
                e.counted = false;
                was
            }),
            _ => state
                .map
                .remove(&slot)
                .and_then(|e| e.counted.then_some(e.value.len())),
        };
        if let Some(len) = removed {
            Self::account(&mut state, -1, -(len as i64));
        }
        Ok(())
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.tokio_check();
        let state = self.state.lock();
        if self.defect == Defect::ContainsEverWritten {
            return Ok(state.ever.contains(key));
        }
        Ok(self.live(&state, key).is_some())
    }

    async fn clear(&self) -> Result<()> {
        self.tokio_check();
        let mut state = self.state.lock();
        state.map.clear();
        state.ever.clear();
        if self.defect != Defect::ClearLeavesUsage {
            state.entries = 0;
            state.bytes = 0;
        }
        Ok(())
    }

    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        let extra = u64::from(self.defect == Defect::TailOffByOne);
        Ok(self
            .get(key)
            .await?
            .map(|v| warmcache_core::backend::tail(v, len.saturating_add(extra))))
    }

    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        self.tokio_check();
        let state = self.state.lock();
        let mut all: Vec<KeyInfo> = state
            .map
            .iter()
            .filter(|(_, e)| !e.tombstone)
            .map(|(k, e)| KeyInfo {
                key: *k,
                size: if self.defect == Defect::ListStaleSizes {
                    e.first_len
                } else {
                    e.value.len() as u64
                },
            })
            .collect();
        drop(state);
        match self.defect {
            Defect::ListsWrongly => {
                all.reverse();
                for e in &mut all {
                    e.size += 1;
                }
                Ok(ListPage {
                    entries: all.into_iter().take(limit).collect(),
                    next: None,
                })
            }
            Defect::ListLimitZeroEmpty if limit == 0 => Ok(ListPage {
                entries: Vec::new(),
                next: after.or(all.first().map(|e| e.key)),
            }),
            Defect::ListLimitZeroLargest if limit == 0 && after.is_none() => {
                let last = all.last().cloned();
                Ok(ListPage {
                    next: last.as_ref().map(|e| e.key),
                    entries: last.into_iter().collect(),
                })
            }
            Defect::ListAfterInclusive if after.is_some() => {
                let start = all.partition_point(|e| Some(e.key) < after);
                Ok(page_from_sorted(&all[start..], None, limit))
            }
            _ => Ok(page_from_sorted(&all, after, limit)),
        }
    }

    async fn usage(&self) -> Result<Usage> {
        self.tokio_check();
        let state = self.state.lock();
        Ok(Usage {
            entries: state.entries,
            bytes: state.bytes,
        })
    }

    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        let mut state = self.state.lock();
        let mut evicted = 0;
        while state.bytes > max_bytes {
            let Some(victim) = state
                .map
                .iter()
                .filter(|(_, e)| e.counted && !e.tombstone)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(e) = state.map.remove(&victim) {
                Self::account(&mut state, -1, -(e.value.len() as i64));
            }
            evicted += 1;
        }
        Ok(evicted)
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
        let lives = match self.defect {
            Defect::LeasesNeverExpire => Duration::from_secs(86_400),
            Defect::LeaseWholeSeconds => Duration::from_secs(ttl.as_secs()),
            _ => ttl,
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

impl MapBackend {
    fn store(&self, key: &CacheKey, value: Bytes) {
        let slot = self.slot(key);
        let mut guard = self.state.lock();
        let state = &mut *guard;
        state.clock += 1;
        let used = state.clock;
        state.ever.insert(*key);
        let len = value.len() as i64;
        let old = state.map.get(&slot).cloned();
        let counted_before = old.as_ref().filter(|e| e.counted && !e.tombstone);
        let (entries, bytes) = match (counted_before, self.defect) {
            (Some(_), Defect::DoubleCountsOverwrite) => (0, len),
            (Some(e), _) => (0, len - e.value.len() as i64),
            (None, _) => (1, len),
        };
        let first_len = old
            .as_ref()
            .filter(|e| !e.tombstone)
            .map_or(len as u64, |e| e.first_len);
        let previous = old.filter(|e| !e.tombstone).map(|e| e.value);
        state.map.insert(
            slot,
            Entry {
                value,
                first_len,
                previous,
                used,
                counted: true,
                tombstone: false,
            },
        );
        if self.defect == Defect::RacyAccounting {
            // Read the counters, let go of the lock, write them back: the lost-update race.
            let (e, b) = (state.entries, state.bytes);
            drop(guard);
            std::thread::sleep(Duration::from_micros(50));
            let mut state = self.state.lock();
            state.entries = e.wrapping_add_signed(entries);
            state.bytes = b.wrapping_add_signed(bytes);
            return;
        }
        Self::account(state, entries, bytes);
        self.evict(state, slot);
        self.save_put(state, slot);
    }
}

async fn futures_timer_sleep(d: Duration) {
    // The pause must let readers on other threads run; a real sleep guarantees that.
    let _ = maybe_spawn_blocking(move || std::thread::sleep(d)).await;
}

fn harness(defect: Defect) -> impl Harness {
    WithCapacity(
        move |dir: &Path, capacity: Option<u64>| -> Result<Arc<dyn Backend>> {
            Ok(Arc::new(MapBackend::new(defect, dir, capacity)))
        },
    )
}

/// Runs each check against the broken backend and fails unless every one of them fails, with a
/// message containing the given words.
fn assert_caught(defect: Defect, checks: &[(&str, &str)]) {
    let h = harness(defect);
    for (check, words) in checks {
        match run_named(&h, check) {
            Ok(verdict) => {
                panic!("the suite did not catch {defect:?} in check {check}: {verdict:?}")
            }
            Err(failure) => assert!(
                failure.0.contains(words),
                "{defect:?} failed check {check}, but the message does not say {words:?}: {failure}"
            ),
        }
    }
}

fn reference(dir: &Path) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(MapBackend::new(Defect::None, dir, None)))
}

fn small_reference(dir: &Path, capacity: Option<u64>) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(MapBackend::new(
        Defect::None,
        dir,
        Some(capacity.unwrap_or(64 << 10)),
    )))
}

// The correct reference backend passes every check, unbounded and bounded to 64 KiB: the macro
// used twice in one crate.
warmcache_conformance::backend_tests!(reference);
warmcache_conformance::backend_tests!(small_capacity, WithCapacity(small_reference));

fn smallest_reference(dir: &Path) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(MapBackend::new(
        Defect::None,
        dir,
        Some(warmcache_conformance::checks::MIN_CAPACITY),
    )))
}

// And at the smallest capacity the suite runs against.
warmcache_conformance::backend_tests!(smallest_capacity, smallest_reference);

#[test]
fn catches_undeclared_slack_and_allows_declared_slack() {
    assert_caught(
        Defect::UndeclaredSlack,
        &[("capacity_bound", "plus its declared slack of 0 bytes")],
    );
    let outcome = run_named(&harness(Defect::DeclaredSlack), "capacity_bound");
    assert_eq!(outcome, Ok(warmcache_conformance::Verdict::Passed));
}

#[test]
fn catches_lost_writes() {
    assert_caught(
        Defect::LosesWrites,
        &[
            ("round_trip_sizes", "right after its put"),
            ("many_small_keys", "is missing"),
            ("list_and_usage_consistent", "is missing"),
            ("front_invalidation", "did not hit"),
        ],
    );
}

#[test]
fn catches_lost_writes_in_a_bounded_backend() {
    let bounded = WithCapacity(|dir: &Path, _: Option<u64>| -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(MapBackend::new(
            Defect::LosesWrites,
            dir,
            Some(4 << 20),
        )))
    });
    for check in ["many_small_keys", "list_and_usage_consistent"] {
        let failure = run_named(&bounded, check).unwrap_err();
        assert!(failure.0.contains("right after putting it"), "{failure}");
    }
}

#[test]
fn catches_torn_values() {
    assert_caught(
        Defect::TearsValues,
        &[
            ("concurrent_writers_one_key", "torn"),
            ("readers_during_overwrites", "torn"),
        ],
    );
}

#[test]
fn catches_ignored_deletes() {
    assert_caught(
        Defect::IgnoresDelete,
        &[
            ("delete_present_and_missing", "was deleted"),
            ("list_and_usage_consistent", "was deleted"),
        ],
    );
}

#[test]
fn catches_capacity_overrun() {
    assert_caught(
        Defect::Overfills,
        &[("capacity_bound", "over its capacity")],
    );
}

#[test]
fn catches_false_persistence() {
    assert_caught(
        Defect::ForgetsOnReopen,
        &[("persistence_across_reopen", "after a clean reopen")],
    );
}

#[test]
fn catches_forgotten_deletes_on_reopen() {
    assert_caught(
        Defect::ForgetsDeletesOnReopen,
        &[("persistence_across_reopen", "was deleted")],
    );
}

#[test]
fn catches_wrong_listing() {
    assert_caught(
        Defect::ListsWrongly,
        &[
            ("list_and_usage_consistent", "ascending key order"),
            ("list_paging_edges", "a limit of 0"),
        ],
    );
}

#[test]
#[allow(deprecated)]
fn the_former_harness_name_still_runs_the_suite() {
    let sized = warmcache_conformance::Sized(|dir: &Path, capacity: Option<u64>| {
        small_reference(dir, capacity)
    });
    assert_eq!(
        run_named(&sized, "capacity_bound"),
        Ok(warmcache_conformance::Verdict::Passed)
    );
}

#[test]
fn a_deadlocking_backend_fails_its_check_naming_the_operation_instead_of_hanging() {
    let h = harness(Defect::GetDeadlocks);
    let started = std::time::Instant::now();
    let check = warmcache_conformance::CHECKS
        .iter()
        .find(|(n, _)| *n == "round_trip_sizes")
        .unwrap()
        .1;
    let failure =
        warmcache_conformance::run_within(&h, "round_trip_sizes", check, Duration::from_secs(2))
            .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    let message = failure.to_string();
    assert!(
        message.contains("check round_trip_sizes did not finish within 2s"),
        "{message}"
    );
    assert!(message.contains("in flight: get("), "{message}");
    assert!(
        message.contains(warmcache_conformance::BOUND_ENV),
        "{message}"
    );
}

#[test]
fn catches_broken_leases() {
    assert_caught(Defect::LeasesUnguarded, &[("lease_exclusive", "")]);
    assert_caught(
        Defect::LeasesNeverExpire,
        &[("lease_abandoned_expires", "")],
    );
    assert_caught(Defect::ReleaseKeepsLease, &[("lease_released_is_gone", "")]);
    assert_caught(Defect::RenewIgnored, &[("lease_renewal_keeps_it", "")]);
    assert_caught(
        Defect::ReleaseFreesAnyLease,
        &[(
            "lease_stale_holder_changes_nothing",
            "stale holder's release",
        )],
    );
    assert_caught(
        Defect::LeaseWholeSeconds,
        &[("lease_lasts_its_ttl", "whole seconds")],
    );
}

#[test]
fn catches_eviction_that_forgets_entries_but_keeps_them() {
    assert_caught(
        Defect::ForgetfulEviction,
        &[("capacity_bound", "over its capacity")],
    );
}

#[test]
fn catches_an_index_keyed_by_a_prefix() {
    assert_caught(
        Defect::PrefixIndex,
        &[("keys_differing_in_one_byte", "the base key")],
    );
}

/// The check for stale reads must catch a 2% fault in every run, not most runs.
#[test]
fn catches_two_percent_stale_reads_in_every_run() {
    for _ in 0..25 {
        assert_caught(
            Defect::StaleReads,
            &[(
                "fresh_reads_after_overwrite",
                "the previous value came back",
            )],
        );
    }
}

#[test]
fn catches_deleted_keys_read_as_empty_values() {
    assert_caught(
        Defect::DeletedReadsEmpty,
        &[
            ("delete_present_and_missing", "an empty value"),
            ("contains", "an empty value"),
        ],
    );
}

#[test]
fn catches_an_inclusive_after() {
    assert_caught(
        Defect::ListAfterInclusive,
        &[
            ("list_and_usage_consistent", "strictly greater"),
            ("list_paging_edges", "the greatest key"),
        ],
    );
}

#[test]
fn catches_a_tail_one_byte_too_long() {
    assert_caught(
        Defect::TailOffByOne,
        &[("tail_matches_get", "get_tail(key, 0) of a 1-byte value")],
    );
}

#[test]
fn catches_an_empty_page_for_limit_zero() {
    assert_caught(
        Defect::ListLimitZeroEmpty,
        &[("list_paging_edges", "a limit of 0 is treated as 1")],
    );
}

#[test]
fn a_limit_zero_page_with_the_wrong_key_is_blamed_on_the_key_not_the_count() {
    assert_caught(
        Defect::ListLimitZeroLargest,
        &[(
            "list_paging_edges",
            "list(None, 0) returned one entry, but not the smallest key",
        )],
    );
}

#[test]
fn catches_stale_sizes_in_the_listing() {
    assert_caught(
        Defect::ListStaleSizes,
        &[
            ("overwrite", "listed with size 5000, but get returns 300"),
            ("list_and_usage_consistent", "listed with size"),
        ],
    );
}

#[test]
fn catches_overwrites_counted_twice() {
    assert_caught(
        Defect::DoubleCountsOverwrite,
        &[("overwrite", "usage() reports 1 entries and 5300 bytes")],
    );
}

#[test]
fn catches_racy_accounting() {
    assert_caught(
        Defect::RacyAccounting,
        &[("concurrent_distinct_keys", "usage() reports")],
    );
}

#[test]
fn catches_eviction_of_the_value_just_put() {
    assert_caught(
        Defect::EvictsNewest,
        &[("capacity_bound", "read right after it")],
    );
}

#[test]
fn catches_oversize_values_dropped_silently() {
    assert_caught(
        Defect::OversizeDroppedSilently,
        &[
            ("round_trip_sizes", "should be refused with Error::Capacity"),
            ("capacity_bound", "should be refused with Error::Capacity"),
        ],
    );
}

#[test]
fn catches_futures_that_need_tokio() {
    assert_caught(Defect::TokioOnly, &[("driven_by_block_on", "panicked")]);
    // The single-flight check blames the backend, never the computation (which cannot panic).
    assert_caught(
        Defect::TokioOnly,
        &[(
            "front_single_flight",
            "the backend panicked: there is no reactor running",
        )],
    );
}

#[test]
fn catches_a_shrink_that_ignores_reads() {
    assert_caught(
        Defect::ShrinkIgnoresReads,
        &[("shrink_keeps_recently_used", "recently used")],
    );
}

#[test]
fn catches_clear_that_leaves_usage() {
    assert_caught(Defect::ClearLeavesUsage, &[("clear", "usage() reports")]);
}

#[test]
fn catches_contains_that_remembers_deleted_keys() {
    assert_caught(
        Defect::ContainsEverWritten,
        &[
            // Blamed on contains, not on get (which was right).
            ("delete_present_and_missing", "was deleted, but contains("),
            ("contains", "was deleted, but contains("),
        ],
    );
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

/// The documented minimums hold: a correct backend bounded to `MIN_CAPACITY` with values of at
/// most `MIN_VALUE_SIZE` passes every check (the front checks skip: no cache entry fits), also
/// when it evicts early.
#[test]
fn a_correct_backend_passes_at_the_documented_minimums() {
    use warmcache_conformance::checks::{MIN_CAPACITY, MIN_VALUE_SIZE};
    for defect in [Defect::None, Defect::EvictsEarly] {
        let h = move |dir: &Path| -> Result<Arc<dyn Backend>> {
            let mut b = MapBackend::new(defect, dir, Some(MIN_CAPACITY));
            b.limits = Some(Limits::new(
                "map",
                MIN_CAPACITY,
                Some(MIN_VALUE_SIZE),
                None,
            )?);
            Ok(Arc::new(b))
        };
        let failed: Vec<String> = warmcache_conformance::run_all(&h)
            .into_iter()
            .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
            .collect();
        assert!(failed.is_empty(), "{defect:?}: {failed:#?}");
    }
}

/// A harness that counts teardowns, and fails them when asked.
struct Teardowns {
    count: AtomicU64,
    fail: bool,
}

impl Harness for Teardowns {
    fn open(&self, dir: &Path) -> Result<Arc<dyn Backend>> {
        reference(dir)
    }

    fn teardown(&self, _dir: &Path) -> Result<()> {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(warmcache_core::Error::backend(
                warmcache_core::Context::new("map", warmcache_core::Op::Clear),
                "the server refused to drop the namespace",
            ));
        }
        Ok(())
    }
}

#[test]
fn each_check_is_torn_down_and_a_failed_teardown_does_not_fail_it() {
    let h = Teardowns {
        count: AtomicU64::new(0),
        fail: false,
    };
    assert!(run_named(&h, "round_trip_sizes").is_ok());
    assert!(run_named(&h, "persistence_across_reopen").is_ok());
    assert_eq!(h.count.load(Ordering::SeqCst), 2);
    let failing = Teardowns {
        count: AtomicU64::new(0),
        fail: true,
    };
    // Reported on standard error; the check's own verdict stands.
    assert!(run_named(&failing, "missing_key").is_ok());
    assert_eq!(failing.count.load(Ordering::SeqCst), 1);
    // ClearedAfter clears through the harness it wraps.
    let cleared = warmcache_conformance::ClearedAfter(h);
    assert!(run_named(&cleared, "missing_key").is_ok());
    assert_eq!(cleared.0.count.load(Ordering::SeqCst), 3);
}

/// The reference behind each public fault wrapper, injecting nothing: a wrapper forwards every
/// operation (leases, shrinking, tails included), so the wrapped backend passes what the bare
/// one passes, and the layers above are tested with the wrapper over everything they use.
fn behind<W: Backend + 'static>(
    wrap: impl Fn(Arc<dyn Backend>) -> W,
) -> impl Fn(&Path, Option<u64>) -> Result<Arc<dyn Backend>> {
    move |dir, capacity| Ok(Arc::new(wrap(small_reference(dir, capacity)?)))
}

fn behind_faulty(dir: &Path, capacity: Option<u64>) -> Result<Arc<dyn Backend>> {
    use warmcache_conformance::{FaultConfig, FaultyBackend};
    behind(|inner| FaultyBackend::new(inner, FaultConfig::default()))(dir, capacity)
}

fn behind_blocking_faulty(dir: &Path, capacity: Option<u64>) -> Result<Arc<dyn Backend>> {
    use warmcache_conformance::{BlockingFaultyBackend, FaultConfig};
    behind(|inner| BlockingFaultyBackend::new(inner, FaultConfig::default()))(dir, capacity)
}

fn behind_corrupting(dir: &Path, capacity: Option<u64>) -> Result<Arc<dyn Backend>> {
    use warmcache_conformance::CorruptingBackend;
    behind(|inner| CorruptingBackend::new(inner, 0.0, 1))(dir, capacity)
}

warmcache_conformance::backend_tests!(faulty_wrapper, WithCapacity(behind_faulty));
warmcache_conformance::backend_tests!(
    blocking_faulty_wrapper,
    WithCapacity(behind_blocking_faulty)
);
warmcache_conformance::backend_tests!(corrupting_wrapper, WithCapacity(behind_corrupting));

/// Faults reach every operation under its own name, leases included: the lease path of the
/// layers above can be fault-injected.
#[test]
fn fault_wrappers_inject_into_tails_shrinks_and_leases() {
    use warmcache_conformance::{BlockingFaultyBackend, FaultConfig, FaultedOps, FaultyBackend};
    use warmcache_core::Op;
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Backend> =
        Arc::new(MapBackend::new(Defect::None, dir.path(), Some(1 << 20)));
    let key = CacheKey::from_bytes([7; 32]);
    futures::executor::block_on(inner.put(&key, Bytes::from_static(b"0123456789"))).unwrap();
    let down = |ops| FaultConfig {
        error_rate: 1.0,
        ops,
        ..FaultConfig::default()
    };
    let wrappers = |config: FaultConfig| -> Vec<Arc<dyn Backend>> {
        vec![
            Arc::new(FaultyBackend::new(Arc::clone(&inner), config)),
            Arc::new(BlockingFaultyBackend::new(Arc::clone(&inner), config)),
        ]
    };
    let op_of = |e: warmcache_core::Error| Some(e.context().op);
    for b in wrappers(down(FaultedOps::All)) {
        futures::executor::block_on(async {
            let tail = b.get_tail(&key, 4).await.unwrap_err();
            assert_eq!(op_of(tail), Some(Op::GetTail));
            let shrink = b.shrink_to(0).await.unwrap_err();
            assert_eq!(op_of(shrink), Some(Op::Shrink));
            let lease = b
                .try_lease(&key, Duration::from_secs(5), "t")
                .await
                .unwrap_err();
            assert_eq!(op_of(lease), Some(Op::Lease));
        });
    }
    // Reads only: leases are writes, so they are taken, and their renew and release work.
    for b in wrappers(down(FaultedOps::Reads)) {
        futures::executor::block_on(async {
            let lease = b
                .try_lease(&key, Duration::from_secs(5), "t")
                .await
                .unwrap();
            let lease = lease.expect("the wrapped backend's lease");
            lease.renew().await.unwrap();
            lease.release().await.unwrap();
        });
    }
    // A lease taken before an outage cannot be renewed during it.
    let faulty = FaultyBackend::new(Arc::clone(&inner), FaultConfig::default());
    let blocking = BlockingFaultyBackend::new(Arc::clone(&inner), FaultConfig::default());
    let outage = |b: &dyn Backend, set_down: &dyn Fn(bool)| {
        futures::executor::block_on(async {
            let lease = b
                .try_lease(&key, Duration::from_secs(5), "t")
                .await
                .unwrap();
            let lease = lease.expect("the wrapped backend's lease");
            set_down(true);
            assert_eq!(op_of(lease.renew().await.unwrap_err()), Some(Op::Lease));
            set_down(false);
            lease.release().await.unwrap();
        });
    };
    outage(&faulty, &|down| faulty.set_down(down));
    outage(&blocking, &|down| blocking.set_down(down));
    // Shrinking and tails reach the wrapped backend when nothing is injected.
    for b in wrappers(FaultConfig::default()) {
        futures::executor::block_on(async {
            b.put(&key, Bytes::from_static(b"0123456789"))
                .await
                .unwrap();
            assert_eq!(
                b.get_tail(&key, 4).await.unwrap().as_deref(),
                Some(&b"6789"[..])
            );
            assert!(b.shrink_to(0).await.unwrap() > 0, "shrink_to not forwarded");
            assert_eq!(b.usage().await.unwrap().entries, 0);
        });
    }
}
