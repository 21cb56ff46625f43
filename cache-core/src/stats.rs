//! Counters for tiers and the cache front, and their serializable snapshots.
//!
//! Each counter is declared once, in a [`counters!`] list below: its field, its metric name and
//! what it counts. The live counters, the snapshot's fields, the metric registration and the
//! [`Counter`] tables that printers (the CLI's history and Prometheus output) read are all
//! generated from that list.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::{self, Count, Level, Seconds};

/// One counter of a snapshot type `S`: its field, its metric, what it counts, and how to read
/// it. [`TierStats::COUNTERS`] and [`Stats::COUNTERS`] list them all.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Counter<S> {
    /// The snapshot's field, also its key in JSON.
    pub field: &'static str,
    /// The metric's name in the metrics facade ([`crate::metrics`]).
    pub metric: &'static str,
    /// What it counts, in one line (the field's doc and the metric's help).
    pub help: &'static str,
    /// Its value in a snapshot.
    pub get: fn(&S) -> u64,
}

impl<S> Counter<S> {
    /// A counter of a snapshot type declared outside this crate (the wasmtime adapter's), for
    /// printers that read every counter from one table.
    pub const fn new(
        field: &'static str,
        metric: &'static str,
        help: &'static str,
        get: fn(&S) -> u64,
    ) -> Self {
        Self {
            field,
            metric,
            help,
            get,
        }
    }
}

/// Declares a snapshot type and its live counters from one list of counters. The snapshot gets
/// its other fields, then one `u64` per counter; the live struct one [`Count`] per counter,
/// then its other fields.
macro_rules! counters {
    (
        $(#[$snap_meta:meta])*
        pub struct $snap:ident { $( $(#[$field_meta:meta])* pub $other:ident : $other_ty:ty, )* }
        $(#[$live_meta:meta])*
        struct $live:ident { $( $live_field:ident : $live_ty:ty, )* }
        counts { $( $count:ident => $metric:literal, $help:literal; )* }
    ) => {
        $(#[$snap_meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        #[non_exhaustive]
        pub struct $snap {
            $( $(#[$field_meta])* pub $other: $other_ty, )*
            $( #[doc = concat!($help, " (`", $metric, "`).")] pub $count: u64, )*
        }

        impl $snap {
            /// Every counter of this snapshot, in declaration order.
            pub const COUNTERS: &'static [Counter<$snap>] = &[$(
                Counter { field: stringify!($count), metric: $metric, help: $help, get: |s| s.$count },
            )*];

            /// Adds `other`'s counters to these.
            fn add_counts(&mut self, other: &Self) {
                $( self.$count += other.$count; )*
            }
        }

        $(#[$live_meta])*
        #[derive(Debug)]
        pub(crate) struct $live {
            $( pub(crate) $count: Count, )*
            $( $live_field: $live_ty, )*
        }

        impl $live {
            /// Registers every counter with `labels`.
            fn with(labels: &[metrics::Label], $( $live_field: $live_ty ),*) -> Self {
                Self { $( $count: Count::new($metric, labels), )* $( $live_field, )* }
            }

            /// Copies every counter into `snapshot`.
            fn fill(&self, snapshot: &mut $snap) {
                $( snapshot.$count = self.$count.get(); )*
            }
        }
    };
}

counters! {
    /// A snapshot of one tier's counters.
    pub struct TierStats {
        /// The tier's name (its position and backend unless named explicitly).
        pub name: String,
        /// The backend's [`name`](crate::Backend::name).
        pub backend: String,
        /// Mean latency of reads, in microseconds.
        pub read_latency_mean_us: f64,
        /// Longest read, in microseconds.
        pub read_latency_max_us: f64,
        /// Whether the read circuit breaker is open right now (reads skip the tier).
        pub breaker_open: bool,
        /// Whether the write circuit breaker is open right now (writes skip the tier).
        pub write_breaker_open: bool,
        /// Background writes queued and not yet finished.
        pub pending_writes: u64,
    }
    /// Live counters of one tier, also emitted through the metrics facade ([`crate::metrics`]).
    /// Updated with relaxed atomics: each counter is exact, a snapshot of several is not a
    /// single instant.
    struct TierCounters {
        pending: Level,
        read_seconds: Seconds,
        read_nanos: AtomicU64,
        read_ops: AtomicU64,
        read_nanos_max: AtomicU64,
    }
    counts {
        hits => "warmcache_tier_hits_total", "Reads that returned a verified entry";
        misses => "warmcache_tier_misses_total", "Reads that found nothing usable (including entries that failed verification)";
        errors => "warmcache_tier_errors_total", "Reads that failed with an error (including timeouts)";
        timeouts => "warmcache_tier_timeouts_total", "Operations that ran past the tier's timeout";
        corrupt => "warmcache_tier_corrupt_total", "Entries that failed verification as damaged";
        forged => "warmcache_tier_forged_total", "Entries that failed authentication with a secret configured";
        skipped => "warmcache_tier_skipped_total", "Operations skipped because the tier's circuit breaker was open";
        writes => "warmcache_tier_writes_total", "Successful writes (puts and promotions)";
        write_errors => "warmcache_tier_write_errors_total", "Failed writes";
        dropped_writes => "warmcache_tier_dropped_writes_total", "Background writes dropped because the tier's queue was full";
        promotions => "warmcache_tier_promotions_total", "Entries copied into this tier from a slower one";
        bytes_read => "warmcache_tier_read_bytes_total", "Bytes of verified entries read";
        bytes_written => "warmcache_tier_written_bytes_total", "Bytes written";
        leases => "warmcache_tier_leases_total", "Leases taken on this tier before computing a key";
        lease_waits => "warmcache_tier_lease_waits_total", "Requests that found a key's lease held by another process or host and waited for it";
        lease_timeouts => "warmcache_tier_lease_timeouts_total", "Lease waits that ran out, after which the key was computed here anyway";
        lease_errors => "warmcache_tier_lease_errors_total", "Lease operations that failed or timed out (the key was computed without the lease)";
        trusted_loads => "warmcache_tier_trusted_loads_total", "Hits on entry files that verified before and had not changed since, loaded without hashing them again (Tier::verified_files)";
        unpublished => "warmcache_tier_unpublished_total", "Values computed because this signed tier had no entry, kept to the other tiers: no signing key to write them here";
    }
}

impl TierCounters {
    /// Counters of a tier with `labels` ([`metrics::tier_labels`]).
    pub(crate) fn new(labels: &[metrics::Label]) -> Self {
        Self::with(
            labels,
            Level::new("warmcache_tier_pending_writes", labels),
            Seconds::new("warmcache_tier_read_duration_seconds", labels),
            AtomicU64::new(0),
            AtomicU64::new(0),
            AtomicU64::new(0),
        )
    }

    /// Sets the gauge of background writes queued.
    pub(crate) fn set_pending(&self, writes: u64) {
        self.pending.set(writes as f64);
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
        let mut stats = TierStats {
            name,
            backend,
            read_latency_mean_us: if ops == 0 {
                0.0
            } else {
                total as f64 / ops as f64 / 1000.0
            },
            read_latency_max_us: self.read_nanos_max.load(Relaxed) as f64 / 1000.0,
            breaker_open,
            write_breaker_open,
            pending_writes,
            ..TierStats::default()
        };
        self.fill(&mut stats);
        stats
    }
}

counters! {
    /// A snapshot of a [`Cache`](crate::Cache)'s counters, with its tiers'. For the wasmtime
    /// caches a computation is a compile, and a decode a load of a stored artifact into the
    /// engine (`decode_errors` are artifacts wasmtime rejected as incompatible).
    pub struct Stats {
        /// Decoded values currently in the live tier.
        pub live_entries: u64,
        /// Time spent reading, verifying and decoding entries on tier hits, in milliseconds.
        pub load_ms: f64,
        /// Compute time that tier hits saved, in milliseconds: for each hit, the time its
        /// entry's computation took when it was stored (recorded in the entry).
        pub compute_saved_ms: f64,
        /// Total time spent computing, in milliseconds.
        pub compute_ms: f64,
        /// Per-tier counters, fastest tier first.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub tiers: Vec<TierStats>,
    }
    /// Live counters of the cache front, also emitted through the metrics facade.
    struct CacheCounters {
        compute_seconds: Seconds,
        compute_nanos: AtomicU64,
        load_nanos: AtomicU64,
        saved_nanos: AtomicU64,
    }
    counts {
        live_hits => "warmcache_cache_live_hits_total", "Requests answered from the live tier of decoded values";
        tier_hits => "warmcache_cache_tier_hits_total", "Requests answered by decoding an entry from a storage tier";
        file_loads => "warmcache_cache_file_loads_total", "Tier hits decoded from a local file handed over as a file (mapped)";
        misses => "warmcache_cache_misses_total", "Requests no tier could answer";
        computes => "warmcache_cache_computes_total", "Computations run (compiles, for the wasmtime caches)";
        compute_errors => "warmcache_cache_compute_errors_total", "Computations that returned an error (not cached)";
        compute_panics => "warmcache_cache_compute_panics_total", "Computations that panicked (not cached)";
        remembered_failures => "warmcache_cache_remembered_failures_total", "Requests answered with a remembered failure of the same computation instead of computing again";
        waits => "warmcache_cache_waits_total", "Requests that waited for another caller's computation of the same key";
        coordinated => "warmcache_cache_coordinated_total", "Requests answered by the entry another process or host computed while this one waited on its lease (counted in tier_hits too)";
        decodes => "warmcache_cache_decodes_total", "Entries handed to the decoder: verified stored entries, and a leader's fresh payload for waiters of another caller";
        decode_errors => "warmcache_cache_decode_errors_total", "Entries that verified but did not decode (recomputed and overwritten)";
        inserts => "warmcache_cache_inserts_total", "Values stored with Cache::insert";
        encode_errors => "warmcache_cache_encode_errors_total", "Values the codec could not encode (returned, not stored)";
    }
}

impl Stats {
    /// Adds `other`'s counters and times to these, tier by tier (matched by name; a tier new
    /// to `self` is appended). A tier's latencies, breakers and queue are taken from `other`,
    /// the later snapshot. The CLI keeps its totals over runs this way.
    pub fn accumulate(&mut self, other: &Stats) {
        self.add_counts(other);
        self.load_ms += other.load_ms;
        self.compute_saved_ms += other.compute_saved_ms;
        self.compute_ms += other.compute_ms;
        self.live_entries = other.live_entries;
        for tier in &other.tiers {
            match self.tiers.iter_mut().find(|t| t.name == tier.name) {
                Some(mine) => {
                    let mut merged = tier.clone();
                    merged.add_counts(mine);
                    *mine = merged;
                }
                None => self.tiers.push(tier.clone()),
            }
        }
    }

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
        Self::with(
            &labels,
            Seconds::new("warmcache_cache_compute_duration_seconds", &labels),
            AtomicU64::new(0),
            AtomicU64::new(0),
            AtomicU64::new(0),
        )
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
        let ms = |nanos: &AtomicU64| nanos.load(Relaxed) as f64 / 1e6;
        let mut stats = Stats {
            live_entries,
            load_ms: ms(&self.load_nanos),
            compute_saved_ms: ms(&self.saved_nanos),
            compute_ms: ms(&self.compute_nanos),
            tiers,
            ..Stats::default()
        };
        self.fill(&mut stats);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(name: &str, hits: u64) -> TierStats {
        TierStats {
            name: name.to_owned(),
            hits,
            ..TierStats::default()
        }
    }

    #[test]
    fn accumulate_sums_counters_and_times_and_matches_tiers_by_name() {
        let mut total = Stats {
            computes: 1,
            compute_ms: 2.0,
            tiers: vec![tier("fs", 1), tier("s3", 5)],
            ..Stats::default()
        };
        let run = Stats {
            computes: 2,
            compute_ms: 3.0,
            tiers: vec![tier("s3", 1), tier("redb", 4)],
            ..Stats::default()
        };
        total.accumulate(&run);
        assert_eq!((total.computes, total.compute_ms), (3, 5.0));
        let hits: Vec<_> = total
            .tiers
            .iter()
            .map(|t| (t.name.as_str(), t.hits))
            .collect();
        assert_eq!(hits, [("fs", 1), ("s3", 6), ("redb", 4)]);
    }
}
