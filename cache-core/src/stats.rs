//! Counters for tiers and the cache front, and their serializable snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Live counters of one tier. Updated with relaxed atomics: each counter is exact, a snapshot
/// of several is not a single instant.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) forged: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) dropped_writes: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) read_nanos: AtomicU64,
    pub(crate) read_ops: AtomicU64,
    pub(crate) read_nanos_max: AtomicU64,
    pub(crate) leases: AtomicU64,
    pub(crate) lease_waits: AtomicU64,
    pub(crate) lease_timeouts: AtomicU64,
    pub(crate) lease_errors: AtomicU64,
    pub(crate) trusted_loads: AtomicU64,
}

impl TierCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn record_read_latency(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.read_nanos.fetch_add(nanos, Relaxed);
        self.read_ops.fetch_add(1, Relaxed);
        self.read_nanos_max.fetch_max(nanos, Relaxed);
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
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            errors: self.errors.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            forged: self.forged.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            writes: self.writes.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            dropped_writes: self.dropped_writes.load(Relaxed),
            promotions: self.promotions.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            read_latency_mean_us: if ops == 0 {
                0.0
            } else {
                total as f64 / ops as f64 / 1000.0
            },
            read_latency_max_us: self.read_nanos_max.load(Relaxed) as f64 / 1000.0,
            breaker_open,
            write_breaker_open,
            pending_writes,
            leases: self.leases.load(Relaxed),
            lease_waits: self.lease_waits.load(Relaxed),
            lease_timeouts: self.lease_timeouts.load(Relaxed),
            lease_errors: self.lease_errors.load(Relaxed),
            trusted_loads: self.trusted_loads.load(Relaxed),
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
}

/// Live counters of the cache front.
#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) live_hits: AtomicU64,
    pub(crate) tier_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) computes: AtomicU64,
    pub(crate) compute_errors: AtomicU64,
    pub(crate) compute_panics: AtomicU64,
    pub(crate) compute_nanos: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) decodes: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) encode_errors: AtomicU64,
    pub(crate) file_loads: AtomicU64,
    pub(crate) load_nanos: AtomicU64,
    pub(crate) saved_nanos: AtomicU64,
    pub(crate) inserts: AtomicU64,
    pub(crate) coordinated: AtomicU64,
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
    pub(crate) fn snapshot(&self, live_entries: u64, tiers: Vec<TierStats>) -> Stats {
        Stats {
            live_hits: self.live_hits.load(Relaxed),
            live_entries,
            tier_hits: self.tier_hits.load(Relaxed),
            file_loads: self.file_loads.load(Relaxed),
            load_ms: self.load_nanos.load(Relaxed) as f64 / 1e6,
            compute_saved_ms: self.saved_nanos.load(Relaxed) as f64 / 1e6,
            misses: self.misses.load(Relaxed),
            computes: self.computes.load(Relaxed),
            compute_errors: self.compute_errors.load(Relaxed),
            compute_panics: self.compute_panics.load(Relaxed),
            compute_ms: self.compute_nanos.load(Relaxed) as f64 / 1e6,
            waits: self.waits.load(Relaxed),
            coordinated: self.coordinated.load(Relaxed),
            decodes: self.decodes.load(Relaxed),
            inserts: self.inserts.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            encode_errors: self.encode_errors.load(Relaxed),
            tiers,
        }
    }
}
