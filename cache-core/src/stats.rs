//! Counters for tiers and the cache front, and their serializable snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::{self, Count, Level, Seconds};

/// Live counters of one tier, also emitted through the metrics facade ([`crate::metrics`]).
/// Updated with relaxed atomics: each counter is exact, a snapshot of several is not a single
/// instant.
#[derive(Debug)]
pub(crate) struct TierCounters {
    pub(crate) hits: Count,
    pub(crate) misses: Count,
    pub(crate) errors: Count,
    pub(crate) timeouts: Count,
    pub(crate) corrupt: Count,
    pub(crate) forged: Count,
    pub(crate) skipped: Count,
    pub(crate) writes: Count,
    pub(crate) write_errors: Count,
    pub(crate) dropped_writes: Count,
    pub(crate) promotions: Count,
    pub(crate) bytes_read: Count,
    pub(crate) bytes_written: Count,
    pub(crate) leases: Count,
    pub(crate) lease_waits: Count,
    pub(crate) lease_timeouts: Count,
    pub(crate) lease_errors: Count,
    pub(crate) trusted_loads: Count,
    pub(crate) unpublished: Count,
    pub(crate) pending_writes: Level,
    read_seconds: Seconds,
    read_nanos: AtomicU64,
    read_ops: AtomicU64,
    read_nanos_max: AtomicU64,
}

impl TierCounters {
    /// Counters of a tier with `labels` ([`metrics::tier_labels`]).
    pub(crate) fn new(labels: &[metrics::Label]) -> Self {
        let count = |name| Count::new(name, labels);
        Self {
            hits: count("warmcache_tier_hits_total"),
            misses: count("warmcache_tier_misses_total"),
            errors: count("warmcache_tier_errors_total"),
            timeouts: count("warmcache_tier_timeouts_total"),
            corrupt: count("warmcache_tier_corrupt_total"),
            forged: count("warmcache_tier_forged_total"),
            skipped: count("warmcache_tier_skipped_total"),
            writes: count("warmcache_tier_writes_total"),
            write_errors: count("warmcache_tier_write_errors_total"),
            dropped_writes: count("warmcache_tier_dropped_writes_total"),
            promotions: count("warmcache_tier_promotions_total"),
            bytes_read: count("warmcache_tier_read_bytes_total"),
            bytes_written: count("warmcache_tier_written_bytes_total"),
            leases: count("warmcache_tier_leases_total"),
            lease_waits: count("warmcache_tier_lease_waits_total"),
            lease_timeouts: count("warmcache_tier_lease_timeouts_total"),
            lease_errors: count("warmcache_tier_lease_errors_total"),
            trusted_loads: count("warmcache_tier_trusted_loads_total"),
            unpublished: count("warmcache_tier_unpublished_total"),
            pending_writes: Level::new("warmcache_tier_pending_writes", labels),
            read_seconds: Seconds::new("warmcache_tier_read_duration_seconds", labels),
            read_nanos: AtomicU64::new(0),
            read_ops: AtomicU64::new(0),
            read_nanos_max: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(counter: &Count, n: u64) {
        counter.add(n);
    }

    pub(crate) fn record_read_latency(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.read_nanos.fetch_add(nanos, Relaxed);
        self.read_ops.fetch_add(1, Relaxed);
        self.read_nanos_max.fetch_max(nanos, Relaxed);
        self.read_seconds.record(elapsed);
    }

    pub(crate) fn snapshot(
        &self,
        name: String,
        backend: String,
        breaker_open: bool,
        write_breaker_open: bool,
        pending_writes: u64,
    ) -> TierStats {
        let ops = self.read_ops.load(Relaxed);
        let total = self.read_nanos.load(Relaxed);
        TierStats {
            name,
            backend,
            hits: self.hits.get(),
            misses: self.misses.get(),
            errors: self.errors.get(),
            timeouts: self.timeouts.get(),
            corrupt: self.corrupt.get(),
            forged: self.forged.get(),
            skipped: self.skipped.get(),
            writes: self.writes.get(),
            write_errors: self.write_errors.get(),
            dropped_writes: self.dropped_writes.get(),
            promotions: self.promotions.get(),
            bytes_read: self.bytes_read.get(),
            bytes_written: self.bytes_written.get(),
            read_latency_mean_us: if ops == 0 {
                0.0
            } else {
                total as f64 / ops as f64 / 1000.0
            },
            read_latency_max_us: self.read_nanos_max.load(Relaxed) as f64 / 1000.0,
            breaker_open,
            write_breaker_open,
            pending_writes,
            leases: self.leases.get(),
            lease_waits: self.lease_waits.get(),
            lease_timeouts: self.lease_timeouts.get(),
            lease_errors: self.lease_errors.get(),
            trusted_loads: self.trusted_loads.get(),
            unpublished: self.unpublished.get(),
        }
    }
}

/// A snapshot of one tier's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TierStats {
    /// The tier's name (its position and backend unless named explicitly).
    pub name: String,
    /// The backend's [`name`](crate::Backend::name).
    pub backend: String,
    /// Reads that returned a verified entry.
    pub hits: u64,
    /// Reads that found nothing (including entries that failed verification).
    pub misses: u64,
    /// Reads that failed with an error (including timeouts).
    pub errors: u64,
    /// Operations that ran past the tier's timeout.
    pub timeouts: u64,
    /// Entries that failed verification as damaged.
    pub corrupt: u64,
    /// Entries that failed authentication with a secret configured.
    pub forged: u64,
    /// Operations skipped because the tier's circuit breaker was open.
    pub skipped: u64,
    /// Successful writes (puts and promotions).
    pub writes: u64,
    /// Failed writes.
    pub write_errors: u64,
    /// Background writes dropped because the tier's queue was full.
    pub dropped_writes: u64,
    /// Entries copied into this tier from a slower one.
    pub promotions: u64,
    /// Bytes of verified entries read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Mean latency of reads, in microseconds.
    pub read_latency_mean_us: f64,
    /// Longest read, in microseconds.
    pub read_latency_max_us: f64,
    /// Whether the read circuit breaker is open right now (reads skip the tier).
    pub breaker_open: bool,
    /// Whether the write circuit breaker is open right now (writes skip the tier).
    #[serde(default)]
    pub write_breaker_open: bool,
    /// Background writes queued and not yet finished.
    pub pending_writes: u64,
    /// Leases taken on this tier before computing a key.
    #[serde(default)]
    pub leases: u64,
    /// Requests that found a key's lease held by another process or host and waited for it.
    #[serde(default)]
    pub lease_waits: u64,
    /// Waits that ran out, after which the key was computed here anyway.
    #[serde(default)]
    pub lease_timeouts: u64,
    /// Lease operations that failed or timed out (the key was computed without the lease).
    #[serde(default)]
    pub lease_errors: u64,
    /// Hits on entry files that verified before and had not changed since, loaded without
    /// hashing them again ([`Tier::verified_files`](crate::Tier::verified_files)).
    #[serde(default)]
    pub trusted_loads: u64,
    /// Values this stack computed because this [`signed`](crate::Tier::signed) tier had no
    /// entry, and kept to its other tiers: it holds no signing key to write them here.
    #[serde(default)]
    pub unpublished: u64,
}

/// Live counters of the cache front, also emitted through the metrics facade.
#[derive(Debug)]
pub(crate) struct CacheCounters {
    pub(crate) live_hits: Count,
    pub(crate) tier_hits: Count,
    pub(crate) misses: Count,
    pub(crate) computes: Count,
    pub(crate) compute_errors: Count,
    pub(crate) compute_panics: Count,
    pub(crate) waits: Count,
    pub(crate) decodes: Count,
    pub(crate) decode_errors: Count,
    pub(crate) encode_errors: Count,
    pub(crate) file_loads: Count,
    pub(crate) inserts: Count,
    pub(crate) coordinated: Count,
    compute_seconds: Seconds,
    compute_nanos: AtomicU64,
    load_nanos: AtomicU64,
    saved_nanos: AtomicU64,
}

/// A snapshot of a [`Cache`](crate::Cache)'s counters, with its tiers'.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Requests answered from the live tier of decoded values.
    pub live_hits: u64,
    /// Decoded values currently in the live tier.
    pub live_entries: u64,
    /// Requests answered by decoding an entry from a storage tier.
    pub tier_hits: u64,
    /// Of `tier_hits`, those decoded from a local file handed over as a file (mapped).
    pub file_loads: u64,
    /// Time spent reading, verifying and decoding entries on tier hits, in milliseconds.
    pub load_ms: f64,
    /// Compute time that tier hits saved, in milliseconds: for each hit, the time its entry's
    /// computation took when it was stored (recorded in the entry).
    pub compute_saved_ms: f64,
    /// Requests no tier could answer.
    pub misses: u64,
    /// Computations run.
    pub computes: u64,
    /// Computations that returned an error (not cached).
    pub compute_errors: u64,
    /// Computations that panicked (not cached).
    pub compute_panics: u64,
    /// Total time spent computing, in milliseconds.
    pub compute_ms: f64,
    /// Requests that waited for another caller's computation of the same key.
    pub waits: u64,
    /// Requests answered by the entry another process or host computed while this one waited
    /// on its lease (counted in `tier_hits` too).
    #[serde(default)]
    pub coordinated: u64,
    /// Entries handed to the codec's decoder: verified stored entries, and a leader's freshly
    /// computed payload for waiters the codec would not hand the leader's value to.
    pub decodes: u64,
    /// Entries that verified but the codec could not decode (recomputed and overwritten).
    pub decode_errors: u64,
    /// Values stored with [`Cache::insert`](crate::Cache::insert).
    pub inserts: u64,
    /// Values the codec could not encode (returned, not stored).
    pub encode_errors: u64,
    /// Per-tier counters, fastest tier first.
    pub tiers: Vec<TierStats>,
}

impl Stats {
    /// Sum of `corrupt` over all tiers.
    pub fn corrupt(&self) -> u64 {
        self.tiers.iter().map(|t| t.corrupt).sum()
    }

    /// Sum of `forged` over all tiers.
    pub fn forged(&self) -> u64 {
        self.tiers.iter().map(|t| t.forged).sum()
    }
}

impl CacheCounters {
    /// Counters of the cache with `namespace`.
    pub(crate) fn new(namespace: &str) -> Self {
        let labels = metrics::cache_labels(namespace);
        let count = |name| Count::new(name, &labels);
        Self {
            live_hits: count("warmcache_cache_live_hits_total"),
            tier_hits: count("warmcache_cache_tier_hits_total"),
            misses: count("warmcache_cache_misses_total"),
            computes: count("warmcache_cache_computes_total"),
            compute_errors: count("warmcache_cache_compute_errors_total"),
            compute_panics: count("warmcache_cache_compute_panics_total"),
            waits: count("warmcache_cache_waits_total"),
            decodes: count("warmcache_cache_decodes_total"),
            decode_errors: count("warmcache_cache_decode_errors_total"),
            encode_errors: count("warmcache_cache_encode_errors_total"),
            file_loads: count("warmcache_cache_file_loads_total"),
            inserts: count("warmcache_cache_inserts_total"),
            coordinated: count("warmcache_cache_coordinated_total"),
            compute_seconds: Seconds::new("warmcache_cache_compute_duration_seconds", &labels),
            compute_nanos: AtomicU64::new(0),
            load_nanos: AtomicU64::new(0),
            saved_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one computation that took `nanos`.
    pub(crate) fn computed(&self, nanos: u64) {
        self.computes.add(1);
        self.compute_nanos.fetch_add(nanos, Relaxed);
        self.compute_seconds.record(Duration::from_nanos(nanos));
    }

    /// Counts a stored hit that took `nanos` to load and saved `saved_nanos` of computing.
    pub(crate) fn loaded(&self, nanos: u64, saved_nanos: u64) {
        self.load_nanos.fetch_add(nanos, Relaxed);
        self.saved_nanos.fetch_add(saved_nanos, Relaxed);
    }

    pub(crate) fn snapshot(&self, live_entries: u64, tiers: Vec<TierStats>) -> Stats {
        Stats {
            live_hits: self.live_hits.get(),
            live_entries,
            tier_hits: self.tier_hits.get(),
            file_loads: self.file_loads.get(),
            load_ms: self.load_nanos.load(Relaxed) as f64 / 1e6,
            compute_saved_ms: self.saved_nanos.load(Relaxed) as f64 / 1e6,
            misses: self.misses.get(),
            computes: self.computes.get(),
            compute_errors: self.compute_errors.get(),
            compute_panics: self.compute_panics.get(),
            compute_ms: self.compute_nanos.load(Relaxed) as f64 / 1e6,
            waits: self.waits.get(),
            coordinated: self.coordinated.get(),
            decodes: self.decodes.get(),
            inserts: self.inserts.get(),
            decode_errors: self.decode_errors.get(),
            encode_errors: self.encode_errors.get(),
            tiers,
        }
    }
}
