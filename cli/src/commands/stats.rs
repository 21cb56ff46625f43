//! `warmcache stats`: per-tier contents and the counters of every run so far.

use std::process::ExitCode;

use futures::executor::block_on;
use serde::Serialize;

use super::Outcome;
use crate::config::Settings;
use crate::size::human;

#[derive(Debug, Serialize)]
struct TierReport {
    tier: String,
    kind: &'static str,
    entries: Option<u64>,
    bytes: Option<u64>,
    hits: u64,
    misses: u64,
    errors: u64,
    corrupt: u64,
    forged: u64,
    write_errors: u64,
    dropped_writes: u64,
    leases: u64,
    lease_waits: u64,
    lease_timeouts: u64,
    lease_errors: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    cache_dir: String,
    tiers: Vec<TierReport>,
    live_hits: u64,
    tier_hits: u64,
    misses: u64,
    compiles: u64,
    compile_errors: u64,
    compile_ms: f64,
    compile_saved_ms: f64,
    coordinated: u64,
}

pub fn run(settings: &Settings, json: bool) -> Outcome {
    let stack = super::open(settings)?;
    let history = crate::history::load(&settings.cache_dir.value);
    let mut tiers = Vec::new();
    if stack.live_bytes > 0 {
        // The in-process tier lives only inside each process: no entries to count here.
        tiers.push(TierReport {
            tier: "memory".to_owned(),
            kind: "memory",
            entries: None,
            bytes: None,
            hits: history.live_hits,
            misses: history.tier_hits + history.misses,
            errors: 0,
            corrupt: 0,
            forged: 0,
            write_errors: 0,
            dropped_writes: 0,
            leases: 0,
            lease_waits: 0,
            lease_timeouts: 0,
            lease_errors: 0,
        });
    }
    for tier in &stack.tiers {
        let usage = match block_on(tier.backend().usage()) {
            Ok(usage) => Some(usage),
            Err(e) => {
                tracing::warn!("{}: {e}", tier.label);
                None
            }
        };
        let totals = history.tiers.get(&tier.label).cloned().unwrap_or_default();
        tiers.push(TierReport {
            tier: tier.label.clone(),
            kind: tier.config.kind.as_str(),
            entries: usage.map(|u| u.entries),
            bytes: usage.map(|u| u.bytes),
            hits: totals.hits,
            misses: totals.misses,
            errors: totals.errors,
            corrupt: totals.corrupt,
            forged: totals.forged,
            write_errors: totals.write_errors,
            dropped_writes: totals.dropped_writes,
            leases: totals.leases,
            lease_waits: totals.lease_waits,
            lease_timeouts: totals.lease_timeouts,
            lease_errors: totals.lease_errors,
        });
    }
    let report = Report {
        cache_dir: settings.cache_dir.value.display().to_string(),
        tiers,
        live_hits: history.live_hits,
        tier_hits: history.tier_hits,
        misses: history.misses,
        compiles: history.compiles,
        compile_errors: history.compile_errors,
        compile_ms: history.compile_ms,
        compile_saved_ms: history.compile_saved_ms,
        coordinated: history.coordinated,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("cache directory: {}", report.cache_dir);
    println!(
        "{:<48} {:>8} {:>10} {:>8} {:>8} {:>7} {:>7} {:>6} {:>8} {:>7}",
        "tier",
        "entries",
        "bytes",
        "hits",
        "misses",
        "errors",
        "corrupt",
        "forged",
        "wr-errs",
        "dropped"
    );
    for t in &report.tiers {
        let dash = || "-".to_owned();
        println!(
            "{:<48} {:>8} {:>10} {:>8} {:>8} {:>7} {:>7} {:>6} {:>8} {:>7}",
            t.tier,
            t.entries.map_or_else(dash, |e| e.to_string()),
            t.bytes.map_or_else(dash, human),
            t.hits,
            t.misses,
            t.errors,
            t.corrupt,
            t.forged,
            t.write_errors,
            t.dropped_writes
        );
    }
    println!(
        "compiles: {} ({} failed, {:.1} s); warm starts: {} from tiers; compile time saved: {:.1} s",
        report.compiles,
        report.compile_errors,
        report.compile_ms / 1e3,
        report.tier_hits,
        report.compile_saved_ms / 1e3
    );
    for t in report
        .tiers
        .iter()
        .filter(|t| t.leases + t.lease_waits + t.lease_errors > 0)
    {
        println!(
            "coordination in {}: {} leases taken, {} waits for another's compile ({} ran out),              {} lease errors",
            t.tier, t.leases, t.lease_waits, t.lease_timeouts, t.lease_errors
        );
    }
    if report.coordinated > 0 {
        println!(
            "compiles avoided by waiting for another process or host: {}",
            report.coordinated
        );
    }
    Ok(ExitCode::SUCCESS)
}
