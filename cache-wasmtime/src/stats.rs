//! Counters of a wasmtime cache and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warmcache_core::TierStats;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) live_hits: AtomicU64,
    pub(crate) tier_hits: AtomicU64,
    pub(crate) file_loads: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) compiles: AtomicU64,
    pub(crate) compile_errors: AtomicU64,
    pub(crate) compile_nanos: AtomicU64,
    pub(crate) saved_nanos: AtomicU64,
    pub(crate) load_nanos: AtomicU64,
    pub(crate) stored_loads: AtomicU64,
    pub(crate) incompatible: AtomicU64,
    pub(crate) waits: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A snapshot of a [`WasmCache`](crate::WasmCache)'s counters, with its tiers'.
///
/// Each counter is exact; a snapshot of several is not a single instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WasmStats {
    /// Requests answered from the in-process tier of loaded artifacts.
    pub live_hits: u64,
    /// Artifacts currently in the in-process tier.
    pub live_entries: u64,
    /// Requests answered by loading a verified entry from a storage tier.
    pub tier_hits: u64,
    /// Of `tier_hits`, those loaded by mapping a local file rather than from bytes.
    pub file_loads: u64,
    /// Requests no tier could answer.
    pub misses: u64,
    /// Compilations run (including failed ones).
    pub compiles: u64,
    /// Compilations that failed (not cached).
    pub compile_errors: u64,
    /// Time spent compiling, in milliseconds.
    pub compile_ms: f64,
    /// Compile time that tier hits saved, in milliseconds: for each hit, the time the entry's
    /// compilation took when it was stored (recorded in the entry).
    pub compile_saved_ms: f64,
    /// Time spent reading, verifying and loading entries on tier hits, in milliseconds.
    pub load_ms: f64,
    /// Stored entries handed to wasmtime's `deserialize` (all verified first). Entries that fail
    /// verification never count here.
    pub stored_loads: u64,
    /// Verified entries wasmtime rejected as incompatible (evicted and recompiled).
    pub incompatible: u64,
    /// Requests that waited for another caller's lookup or compile of the same artifact.
    pub waits: u64,
    /// Per-tier counters, fastest first.
    pub tiers: Vec<TierStats>,
}

impl WasmStats {
    /// Entries that failed verification as damaged, over all tiers.
    pub fn corrupt(&self) -> u64 {
        self.tiers.iter().map(|t| t.corrupt).sum()
    }

    /// Entries that failed authentication (a secret is configured), over all tiers.
    pub fn forged(&self) -> u64 {
        self.tiers.iter().map(|t| t.forged).sum()
    }
}

impl Counters {
    pub(crate) fn snapshot(&self, live_entries: u64, tiers: Vec<TierStats>) -> WasmStats {
        let ms = |c: &AtomicU64| c.load(Relaxed) as f64 / 1e6;
        WasmStats {
            live_hits: self.live_hits.load(Relaxed),
            live_entries,
            tier_hits: self.tier_hits.load(Relaxed),
            file_loads: self.file_loads.load(Relaxed),
            misses: self.misses.load(Relaxed),
            compiles: self.compiles.load(Relaxed),
            compile_errors: self.compile_errors.load(Relaxed),
            compile_ms: ms(&self.compile_nanos),
            compile_saved_ms: ms(&self.saved_nanos),
            load_ms: ms(&self.load_nanos),
            stored_loads: self.stored_loads.load(Relaxed),
            incompatible: self.incompatible.load(Relaxed),
            waits: self.waits.load(Relaxed),
            tiers,
        }
    }
}
