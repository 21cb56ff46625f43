//! `warmcache stats`: per-tier contents and the counters of every run so far.

use std::process::ExitCode;

use futures::executor::block_on;
use serde::Serialize;

use super::Outcome;
use crate::config::Settings;
use crate::size::human;

/// How `warmcache stats` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON.
    Json,
    /// Prometheus's text exposition format, with the metric names of `warmcache_core::metrics`.
    Prometheus,
}

#[derive(Debug, Serialize)]
struct TierReport {
    tier: String,
    kind: &'static str,
    entries: Option<u64>,
    bytes: Option<u64>,
    capacity: Option<u64>,
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

pub fn run(settings: &Settings, format: Format) -> Outcome {
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
            capacity: Some(stack.live_bytes),
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
        let spinner = crate::progress::spinner(&format!("{}: counting", tier.label));
        let counted = block_on(tier.backend().usage());
        spinner.finish_and_clear();
        let usage = match counted {
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
            capacity: tier.backend().capabilities().capacity,
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
    match format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(ExitCode::SUCCESS);
        }
        Format::Prometheus => {
            print!("{}", prometheus(&report));
            return Ok(ExitCode::SUCCESS);
        }
        Format::Table => {}
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

/// One tier's value of a metric, if it has one.
type TierValue = fn(&TierReport) -> Option<u64>;

/// `report` in Prometheus's text exposition format (version 0.0.4): the persisted totals of
/// every run under the metric names the library emits, and the tiers' current contents.
fn prometheus(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let tier = |t: &TierReport| {
        format!(
            "{{tier=\"{}\",kind=\"{}\"}}",
            escape(&t.tier),
            escape(t.kind)
        )
    };
    let per_tier = |value: TierValue| -> Vec<(String, f64)> {
        report
            .tiers
            .iter()
            .filter_map(|t| Some((tier(t), value(t)? as f64)))
            .collect()
    };
    let counters: [(&str, &str, TierValue); 11] = [
        ("hits", "reads that returned a verified entry", |t| {
            Some(t.hits)
        }),
        ("misses", "reads that found nothing usable", |t| {
            Some(t.misses)
        }),
        ("errors", "reads that failed", |t| Some(t.errors)),
        (
            "corrupt",
            "entries that failed verification as damaged",
            |t| Some(t.corrupt),
        ),
        ("forged", "entries that failed authentication", |t| {
            Some(t.forged)
        }),
        ("write_errors", "failed writes", |t| Some(t.write_errors)),
        (
            "dropped_writes",
            "background writes dropped, queue full",
            |t| Some(t.dropped_writes),
        ),
        ("leases", "leases taken before compiling", |t| {
            Some(t.leases)
        }),
        ("lease_waits", "waits for another's compile", |t| {
            Some(t.lease_waits)
        }),
        ("lease_timeouts", "waits that ran out", |t| {
            Some(t.lease_timeouts)
        }),
        ("lease_errors", "lease operations that failed", |t| {
            Some(t.lease_errors)
        }),
    ];
    for (name, help, value) in counters {
        family(
            &format!("warmcache_tier_{name}_total"),
            "counter",
            help,
            &per_tier(value),
        );
    }
    family(
        "warmcache_tier_entries",
        "gauge",
        "entries stored in the tier now",
        &per_tier(|t| t.entries),
    );
    family(
        "warmcache_tier_used_bytes",
        "gauge",
        "bytes stored in the tier now",
        &per_tier(|t| t.bytes),
    );
    family(
        "warmcache_tier_capacity_bytes",
        "gauge",
        "the tier's byte capacity, when bounded",
        &per_tier(|t| t.capacity),
    );
    let cache = "{cache=\"wasmtime\"}".to_owned();
    let totals: [(&str, &str, f64); 8] = [
        (
            "live_hits_total",
            "requests answered from the in-process tier",
            report.live_hits as f64,
        ),
        (
            "tier_hits_total",
            "requests answered from a storage tier",
            report.tier_hits as f64,
        ),
        (
            "misses_total",
            "requests no tier could answer",
            report.misses as f64,
        ),
        ("computes_total", "compiles run", report.compiles as f64),
        (
            "compute_errors_total",
            "compiles that failed",
            report.compile_errors as f64,
        ),
        (
            "compute_seconds_total",
            "time spent compiling",
            report.compile_ms / 1e3,
        ),
        (
            "compute_saved_seconds_total",
            "compile time that warm starts saved",
            report.compile_saved_ms / 1e3,
        ),
        (
            "coordinated_total",
            "loads of an artifact another process or host compiled meanwhile",
            report.coordinated as f64,
        ),
    ];
    for (name, help, value) in totals {
        family(
            &format!("warmcache_cache_{name}"),
            "counter",
            help,
            &[(cache.clone(), value)],
        );
    }
    out
}

/// A label value escaped as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
