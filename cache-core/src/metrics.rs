//! The counters warmcache emits through the [`metrics`] facade, so an embedder picks the
//! exporter (Prometheus, StatsD, OpenTelemetry) by installing a recorder.
//!
//! Every counter here is also in [`Stats`](crate::Stats) and [`TierStats`](crate::TierStats):
//! one increment updates both. Handles are registered when a [`Tiered`](crate::Tiered) stack or
//! a [`Cache`](crate::Cache) is built, so **install the recorder before building them**
//! (handles registered without a recorder stay no-ops, as the facade documents).
//!
//! Names follow Prometheus conventions. Tier metrics carry the labels `tier` (the tier's name)
//! and `backend` (its backend's name); cache metrics carry `cache` (the cache's namespace, such
//! as `wasmtime-module`).
//!
//! Every counter (`warmcache_tier_*_total`, `warmcache_cache_*_total`) is declared once, with
//! its help text, in [`TierStats::COUNTERS`](crate::TierStats::COUNTERS) and
//! [`Stats::COUNTERS`](crate::Stats::COUNTERS); each snapshot field's documentation names its
//! metric. The other metrics:
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `warmcache_tier_read_duration_seconds` | histogram | duration of each read |
//! | `warmcache_tier_pending_writes` | gauge | background writes queued, not finished |
//! | `warmcache_tier_breaker_open` | gauge | 1 while the read breaker is open |
//! | `warmcache_tier_write_breaker_open` | gauge | 1 while the write breaker is open |
//! | `warmcache_cache_compute_duration_seconds` | histogram | duration of each computation |
//!
//! The `warmcache stats --format prometheus` command prints the CLI's persisted totals under the
//! same names.
//!
//! # Example
//!
//! ```
//! use metrics_util::debugging::DebuggingRecorder;
//! use warmcache_core::{BytesCodec, Cache, bytes::Bytes};
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     let cache = Cache::builder("demo", BytesCodec).build();
//!     fn up(s: &&str) -> Result<Bytes, std::io::Error> {
//!         Ok(Bytes::from(s.to_uppercase()))
//!     }
//!     cache.get_or_compute(&"a", up).unwrap();
//!     cache.get_or_compute(&"a", up).unwrap();
//! });
//! let counters = snapshotter.snapshot().into_vec();
//! let live_hits = counters.iter().find(|(key, ..)| {
//!     key.key().name() == "warmcache_cache_live_hits_total"
//! });
//! assert!(live_hits.is_some());
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub(crate) use metrics::Label;
use metrics::{Counter, Gauge, Histogram};

/// One counter: its exact value for [`Stats`](crate::Stats) snapshots and its facade handle.
pub(crate) struct Count {
    value: AtomicU64,
    exported: Counter,
}

impl Count {
    /// A counter named `name` with `labels`, registered with the current recorder.
    pub(crate) fn new(name: &'static str, labels: &[Label]) -> Self {
        Self {
            value: AtomicU64::new(0),
            exported: metrics::counter!(name, labels.iter()),
        }
    }

    /// Adds `n`.
    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
        self.exported.increment(n);
    }

    /// The value now.
    pub(crate) fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

impl fmt::Debug for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// A duration histogram in seconds.
pub(crate) struct Seconds(Histogram);

impl Seconds {
    pub(crate) fn new(name: &'static str, labels: &[Label]) -> Self {
        Self(metrics::histogram!(name, labels.iter()))
    }

    pub(crate) fn record(&self, elapsed: Duration) {
        self.0.record(elapsed.as_secs_f64());
    }
}

impl fmt::Debug for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seconds")
    }
}

/// A gauge of a state (0 or 1) or a level.
pub(crate) struct Level(Gauge);

impl Level {
    pub(crate) fn new(name: &'static str, labels: &[Label]) -> Self {
        Self(metrics::gauge!(name, labels.iter()))
    }

    /// A gauge that records nothing (breakers outside a tier, in unit tests).
    pub(crate) fn none() -> Self {
        Self(Gauge::noop())
    }

    pub(crate) fn set(&self, value: f64) {
        self.0.set(value);
    }
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Level")
    }
}

/// The labels of a tier's metrics.
pub(crate) fn tier_labels(tier: &str, backend: &str) -> [Label; 2] {
    [
        Label::new("tier", tier.to_owned()),
        Label::new("backend", backend.to_owned()),
    ]
}

/// The labels of a cache's metrics.
pub(crate) fn cache_labels(namespace: &str) -> [Label; 1] {
    [Label::new("cache", namespace.to_owned())]
}
