//! `warmcache stats`: per-tier contents and the counters of every run so far.

use std::process::ExitCode;

use futures::executor::block_on;
use serde::Serialize;
use warmcache_core::{Stats, TierStats};

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

/// One tier: what it holds now, and its counters over every run.
#[derive(Debug, Serialize)]
struct TierReport {
    kind: &'static str,
    entries: Option<u64>,
    bytes: Option<u64>,
    capacity: Option<u64>,
    #[serde(flatten)]
    totals: TierStats,
}

/// The cache's counters over every run (the library's `Stats`, summed), its tiers' included.
#[derive(Debug, Serialize)]
struct Report {
    cache_dir: String,
    tiers: Vec<TierReport>,
    #[serde(flatten)]
    totals: Stats,
    /// Requests each CPU level answered, by level name (`cpu_level`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    cpu_levels: std::collections::BTreeMap<String, u64>,
    /// What baseline code did (`cold_start = "baseline"`).
    baseline: warmcache_wasmtime::BaselineStats,
}

pub fn run(settings: &Settings, format: Format) -> Outcome {
    let stack = super::open(settings)?;
    let history = crate::history::load(&settings.cache_dir.value);
    let mut totals = history.stats;
    let mut tiers = Vec::new();
    if stack.live_bytes > 0 {
        // The in-process tier lives only inside each process: no entries to count here.
        let mut memory = TierStats::default();
        memory.name = "memory".to_owned();
        memory.hits = totals.live_hits;
        memory.misses = totals.tier_hits + totals.misses;
        tiers.push(TierReport {
            kind: "memory",
            entries: None,
            bytes: None,
            capacity: Some(stack.live_bytes),
            totals: memory,
        });
    }
    let mut recorded = std::mem::take(&mut totals.tiers);
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
        let mut tier_totals = recorded
            .iter()
            .position(|t| t.name == tier.label)
            .map(|i| recorded.swap_remove(i))
            .unwrap_or_default();
        tier_totals.name.clone_from(&tier.label);
        tiers.push(TierReport {
            kind: tier.config.kind.as_str(),
            entries: usage.map(|u| u.entries),
            bytes: usage.map(|u| u.bytes),
            capacity: tier.backend().capabilities().capacity,
            totals: tier_totals,
        });
    }
    let report = Report {
        cache_dir: settings.cache_dir.value.display().to_string(),
        tiers,
        totals,
        cpu_levels: history.cpu_levels,
        baseline: history.baseline,
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Prometheus => print!("{}", prometheus(&report)),
        Format::Table => print!("{}", table(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `report` as a table for people.
fn table(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = format!("cache directory: {}\n", report.cache_dir);
    let _ = writeln!(
        out,
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
        let c = &t.totals;
        let _ = writeln!(
            out,
            "{:<48} {:>8} {:>10} {:>8} {:>8} {:>7} {:>7} {:>6} {:>8} {:>7}",
            c.name,
            t.entries.map_or_else(dash, |e| e.to_string()),
            t.bytes.map_or_else(dash, human),
            c.hits,
            c.misses,
            c.errors,
            c.corrupt,
            c.forged,
            c.write_errors,
            c.dropped_writes
        );
    }
    let s = &report.totals;
    let _ = writeln!(
        out,
        "compiles: {} ({} failed, {:.1} s; {} not run, their failure remembered); warm starts: {} \
         from tiers; compile time saved: {:.1} s",
        s.computes,
        s.compute_errors + s.compute_panics,
        s.compute_ms / 1e3,
        s.remembered_failures,
        s.tier_hits,
        s.compute_saved_ms / 1e3
    );
    notes(report, &mut out);
    out
}

/// The table's lines for what happened at all: coordination, CPU levels, baseline code.
fn notes(report: &Report, out: &mut String) {
    use std::fmt::Write;
    for t in report.tiers.iter().map(|t| &t.totals) {
        if t.leases + t.lease_waits + t.lease_errors > 0 {
            let _ = writeln!(
                out,
                "coordination in {}: {} leases taken, {} waits for another's compile ({} ran out), {} lease errors",
                t.name, t.leases, t.lease_waits, t.lease_timeouts, t.lease_errors
            );
        }
    }
    if report.totals.coordinated > 0 {
        let _ = writeln!(
            out,
            "compiles avoided by waiting for another process or host: {}",
            report.totals.coordinated
        );
    }
    if !report.cpu_levels.is_empty() {
        let levels: Vec<String> = report
            .cpu_levels
            .iter()
            .map(|(level, n)| format!("{level} {n}"))
            .collect();
        let _ = writeln!(out, "requests by CPU level: {}", levels.join(", "));
    }
    let b = &report.baseline;
    if b.served + b.unsupported > 0 {
        let mean = match b.upgrades {
            0 => String::new(),
            n => format!(
                ", {:.1} s from baseline to optimized on average",
                b.upgrade_ms / 1e3 / n as f64
            ),
        };
        let _ = writeln!(
            out,
            "baseline code: {} requests, {} upgrades{mean}, {} failed, {} modules Winch cannot compile",
            b.served, b.upgrades, b.upgrade_failures, b.unsupported
        );
    }
}

/// One tier's value of a gauge, if it has one.
type TierValue = fn(&TierReport) -> Option<u64>;

/// `report` in Prometheus's text exposition format (version 0.0.4): the persisted totals of
/// every run under the metric names, and with the help, the library declares for them
/// ([`TierStats::COUNTERS`], [`Stats::COUNTERS`]), and the tiers' current contents.
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
    let per_tier = |value: &dyn Fn(&TierReport) -> Option<u64>| -> Vec<(String, f64)> {
        let labels = |t: &TierReport| {
            let (tier, kind) = (escape(&t.totals.name), escape(t.kind));
            format!("{{tier=\"{tier}\",kind=\"{kind}\"}}")
        };
        let sample = |t| Some((labels(t), value(t)? as f64));
        report.tiers.iter().filter_map(sample).collect()
    };
    for counter in TierStats::COUNTERS {
        let samples = per_tier(&|t| Some((counter.get)(&t.totals)));
        family(counter.metric, "counter", counter.help, &samples);
    }
    let gauges: [(&str, &str, TierValue); 3] = [
        (
            "warmcache_tier_entries",
            "Entries stored in the tier now",
            |t| t.entries,
        ),
        (
            "warmcache_tier_used_bytes",
            "Bytes stored in the tier now",
            |t| t.bytes,
        ),
        (
            "warmcache_tier_capacity_bytes",
            "The tier's byte capacity, when bounded",
            |t| t.capacity,
        ),
    ];
    for (name, help, value) in gauges {
        family(name, "gauge", help, &per_tier(&value));
    }
    let cache = "{cache=\"wasmtime\"}".to_owned();
    let s = &report.totals;
    for counter in Stats::COUNTERS {
        let sample = [(cache.clone(), (counter.get)(s) as f64)];
        family(counter.metric, "counter", counter.help, &sample);
    }
    let seconds = [
        (
            "warmcache_cache_compute_seconds_total",
            "Time spent compiling",
            s.compute_ms,
        ),
        (
            "warmcache_cache_compute_saved_seconds_total",
            "Compile time that warm starts saved",
            s.compute_saved_ms,
        ),
    ];
    for (name, help, ms) in seconds {
        family(name, "counter", help, &[(cache.clone(), ms / 1e3)]);
    }
    wasmtime_families(report, &mut family);
    out
}

/// The families only wasmtime caches have: requests by CPU level, and baseline code's counters.
fn wasmtime_families(report: &Report, family: &mut impl FnMut(&str, &str, &str, &[(String, f64)])) {
    let cache = "{cache=\"wasmtime\"}".to_owned();
    let levels: Vec<(String, f64)> = report
        .cpu_levels
        .iter()
        .map(|(level, n)| (format!("{{level=\"{}\"}}", escape(level)), *n as f64))
        .collect();
    if !levels.is_empty() {
        family(
            "warmcache_cpu_level_requests_total",
            "counter",
            "Requests answered by the entry of a CPU level (native: the host's own entry)",
            &levels,
        );
    }
    let b = &report.baseline;
    if b.served + b.unsupported > 0 {
        for counter in warmcache_wasmtime::BaselineStats::COUNTERS {
            let sample = [(cache.clone(), (counter.get)(b) as f64)];
            family(counter.metric, "counter", counter.help, &sample);
        }
        family(
            "warmcache_baseline_upgrade_seconds_total",
            "counter",
            "Time from baseline code to its optimized artifact, summed over upgrades",
            &[(cache.clone(), b.upgrade_ms / 1e3)],
        );
    }
}

/// A label value escaped as the exposition format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
