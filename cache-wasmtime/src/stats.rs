//! Counters of a wasmtime cache and their snapshot.

use serde::{Deserialize, Serialize};
use warmcache_core::{Stats, TierStats};

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
    /// Time spent compiling (and loading the fresh artifact), in milliseconds.
    pub compile_ms: f64,
    /// Compile time that tier hits saved, in milliseconds: for each hit, the time the entry's
    /// compilation took when it was stored (recorded in the entry).
    pub compile_saved_ms: f64,
    /// Time spent reading, verifying and loading entries on tier hits, in milliseconds.
    pub load_ms: f64,
    /// Entries handed to wasmtime's `deserialize`: verified stored entries, and a leader's
    /// freshly compiled artifact for a waiter on another engine. Entries that fail verification
    /// never count here.
    pub stored_loads: u64,
    /// Verified entries wasmtime rejected as incompatible (recompiled and overwritten).
    pub incompatible: u64,
    /// Requests that waited for another caller's lookup or compile of the same artifact.
    pub waits: u64,
    /// Requests answered by the artifact another process or host compiled while this one
    /// waited on its lease (counted in `tier_hits` too): compiles avoided by coordination.
    #[serde(default)]
    pub coordinated: u64,
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

impl WasmStats {
    /// The wasmtime view of the core cache's counters.
    pub(crate) fn from_core(core: Stats) -> Self {
        WasmStats {
            live_hits: core.live_hits,
            live_entries: core.live_entries,
            tier_hits: core.tier_hits,
            file_loads: core.file_loads,
            misses: core.misses,
            compiles: core.computes,
            compile_errors: core.compute_errors + core.compute_panics,
            compile_ms: core.compute_ms,
            compile_saved_ms: core.compute_saved_ms,
            load_ms: core.load_ms,
            stored_loads: core.decodes,
            incompatible: core.decode_errors,
            waits: core.waits,
            coordinated: core.coordinated,
            tiers: core.tiers,
        }
    }
}
