//! Counters kept across runs in `stats.json` in the cache directory, so `warmcache stats` can
//! report hits and misses of earlier processes. Updated under a file lock by every command that
//! uses the cache.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use warmcache_wasmtime::WasmStats;

const FILE: &str = "stats.json";
const LOCK: &str = "stats.lock";

/// Totals of one tier over all runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TierTotals {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub corrupt: u64,
    pub forged: u64,
    pub writes: u64,
}

/// Totals over all runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub tiers: BTreeMap<String, TierTotals>,
    pub live_hits: u64,
    pub tier_hits: u64,
    pub misses: u64,
    pub compiles: u64,
    pub compile_errors: u64,
    pub compile_ms: f64,
    pub compile_saved_ms: f64,
}

impl History {
    /// Adds one cache's counters.
    pub fn add(&mut self, stats: &WasmStats) {
        self.live_hits += stats.live_hits;
        self.tier_hits += stats.tier_hits;
        self.misses += stats.misses;
        self.compiles += stats.compiles;
        self.compile_errors += stats.compile_errors;
        self.compile_ms += stats.compile_ms;
        self.compile_saved_ms += stats.compile_saved_ms;
        for tier in &stats.tiers {
            let t = self.tiers.entry(tier.name.clone()).or_default();
            t.hits += tier.hits;
            t.misses += tier.misses;
            t.errors += tier.errors;
            t.corrupt += tier.corrupt;
            t.forged += tier.forged;
            t.writes += tier.writes;
        }
    }
}

fn lock(dir: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))?;
    file.lock()?;
    Ok(file)
}

fn read(dir: &Path) -> History {
    match std::fs::read(dir.join(FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!("ignoring unreadable {}: {e}", dir.join(FILE).display());
            History::default()
        }),
        Err(_) => History::default(),
    }
}

/// The totals so far (empty when there are none).
pub fn load(dir: &Path) -> History {
    let _lock = lock(dir);
    read(dir)
}

/// Adds `stats` to the totals in `dir`.
pub fn record(dir: &Path, stats: &[WasmStats]) -> std::io::Result<()> {
    let _lock = lock(dir)?;
    let mut history = read(dir);
    for s in stats {
        history.add(s);
    }
    write(dir, &history)
}

/// Forgets the totals.
pub fn reset(dir: &Path) -> std::io::Result<()> {
    let _lock = lock(dir)?;
    write(dir, &History::default())
}

fn write(dir: &Path, history: &History) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
    let mut file = File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(history).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE))
}
