//! The bench report: its figures, the recommendation drawn from them, and how it is printed.

use serde::Serialize;

/// One measurement's samples, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured, such as `fs (mmap)` or `compile`.
    pub name: String,
    /// `compile`, `memory`, `tier` or `wasmtime-cache`.
    pub kind: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub samples_ms: Vec<f64>,
    /// Load plus instantiating and running the start function (or an export) until it returns
    /// or makes its first host call: mapped code is paged in lazily, so this is the fair
    /// comparison.
    pub first_call_median_ms: Option<f64>,
}

/// Results for one module.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    pub name: String,
    pub wasm_bytes: u64,
    pub artifact_bytes: u64,
    pub measurements: Vec<Measurement>,
    /// A fresh instance per call, after the warm start: kind `instantiate`.
    pub instantiation: Vec<Measurement>,
}

impl ModuleReport {
    pub fn median(&self, name: &str) -> Option<f64> {
        self.measurements
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.median_ms)
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub os: &'static str,
    pub arch: &'static str,
    pub cpus: usize,
    pub wasmtime: &'static str,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub runs: u32,
    pub modules: Vec<ModuleReport>,
    pub recommendation: Recommendation,
}

/// The recommended tier layout and why.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub tiers: String,
    pub reasons: Vec<String>,
}

/// A measurement from its samples: median, range, and the median of its first calls.
pub(super) fn summarize(
    name: String,
    kind: &'static str,
    mut samples: Vec<f64>,
    first: Vec<f64>,
) -> Measurement {
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return f64::NAN;
        }
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let mut first = first;
    let first_call = (!first.is_empty()).then(|| median(&mut first));
    let m = median(&mut samples);
    Measurement {
        name,
        kind,
        median_ms: m,
        min_ms: samples.first().copied().unwrap_or(f64::NAN),
        max_ms: samples.last().copied().unwrap_or(f64::NAN),
        samples_ms: samples,
        first_call_median_ms: first_call,
    }
}

/// Recommends the local tier with the least total warm start (first call included) over the
/// modules, and a remote tier when it beats compiling every module.
pub fn recommend(modules: &[ModuleReport]) -> Recommendation {
    let total = |name: &str| -> Option<f64> {
        modules
            .iter()
            .map(|m| {
                m.measurements
                    .iter()
                    .find(|x| x.name == name)
                    .map(|x| x.first_call_median_ms.unwrap_or(x.median_ms))
            })
            .sum()
    };
    let local = ["fs (mmap)", "fs (bytes)", "redb", "rocksdb"];
    let mut ranked: Vec<(&str, f64)> = local
        .iter()
        .filter_map(|name| total(name).map(|t| (*name, t)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut reasons = Vec::new();
    let mut tiers = vec!["memory".to_owned()];
    if let Some((best, best_ms)) = ranked.first() {
        tiers.push(best.split(' ').next().unwrap_or(best).to_owned());
        let others: Vec<String> = ranked[1..]
            .iter()
            .map(|(n, t)| format!("{n} {t:.1} ms ({:.1}x)", t / best_ms))
            .collect();
        reasons.push(format!(
            "{best} is the fastest local warm start over these modules: {best_ms:.1} ms in total \
             including the first call{}",
            if others.is_empty() {
                String::new()
            } else {
                format!(", against {}", others.join(", "))
            }
        ));
        if let Some(wasmtime) = total("wasmtime's cache") {
            reasons.push(format!(
                "wasmtime's own cache took {wasmtime:.1} ms for the same modules ({:.1}x {best})",
                wasmtime / best_ms
            ));
        }
    }
    reasons.push(
        "memory first: a hit in the in-process tier costs well under a millisecond when the \
         content hash is supplied"
            .to_owned(),
    );
    if let Some(_s3) = total("s3") {
        let beats = modules
            .iter()
            .all(|m| matches!((m.median("s3"), m.median("compile")), (Some(s), Some(c)) if s < c));
        if beats {
            tiers.push("s3".to_owned());
            reasons.push(
                "s3 last, shared by the fleet: a warm start from it beats compiling every module \
                 measured"
                    .to_owned(),
            );
        } else {
            reasons.push(
                "no remote tier: for some modules a warm start from s3 is slower than compiling"
                    .to_owned(),
            );
        }
    }
    Recommendation {
        tiers: tiers.join(","),
        reasons,
    }
}

pub(super) fn print_table(report: &Report) {
    for module in &report.modules {
        println!(
            "\n{} (wasm {}, artifact {})",
            module.name,
            crate::size::human(module.wasm_bytes),
            crate::size::human(module.artifact_bytes)
        );
        let compile = module.median("compile").unwrap_or(f64::NAN);
        println!(
            "  {:<24} {:>12} {:>24} {:>14} {:>12}",
            "", "median", "min - max", "+ first call", "vs compile"
        );
        for m in &module.measurements {
            let speedup = if m.kind == "compile" {
                String::new()
            } else {
                format!("{:.0}x", compile / m.median_ms)
            };
            println!(
                "  {:<24} {:>12} {:>24} {:>14} {:>12}",
                m.name,
                format_ms(m.median_ms),
                format!("{} - {}", format_ms(m.min_ms), format_ms(m.max_ms)),
                m.first_call_median_ms.map_or_else(String::new, format_ms),
                speedup
            );
        }
        println!("  fresh instance per call:");
        for m in &module.instantiation {
            println!(
                "  {:<40} {:>12} {:>24}",
                m.name,
                format_ms(m.median_ms),
                format!("{} - {}", format_ms(m.min_ms), format_ms(m.max_ms)),
            );
        }
    }
    println!("\nrecommended tiers: {}", report.recommendation.tiers);
    for reason in &report.recommendation.reasons {
        println!("  - {reason}");
    }
}

pub(super) fn print_markdown(report: &Report) {
    for module in &report.modules {
        println!(
            "\n### {} (wasm {}, artifact {})\n",
            module.name,
            crate::size::human(module.wasm_bytes),
            crate::size::human(module.artifact_bytes)
        );
        println!("| measurement | median | min - max | load + first call | compile / this |");
        println!("|---|---|---|---|---|");
        let compile = module.median("compile").unwrap_or(f64::NAN);
        for m in &module.measurements {
            println!(
                "| {} | {} | {} - {} | {} | {} |",
                m.name,
                format_ms(m.median_ms),
                format_ms(m.min_ms),
                format_ms(m.max_ms),
                m.first_call_median_ms
                    .map_or_else(|| "-".to_owned(), format_ms),
                if m.kind == "compile" {
                    "-".to_owned()
                } else {
                    format!("{:.0}x", compile / m.median_ms)
                }
            );
        }
        println!("\n| fresh instance per call | median | min - max |");
        println!("|---|---|---|");
        for m in &module.instantiation {
            println!(
                "| {} | {} | {} - {} |",
                m.name,
                format_ms(m.median_ms),
                format_ms(m.min_ms),
                format_ms(m.max_ms)
            );
        }
    }
    println!("\nRecommended tiers: `{}`\n", report.recommendation.tiers);
    for reason in &report.recommendation.reasons {
        println!("- {reason}");
    }
}

pub fn format_ms(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.2} s", value / 1000.0)
    } else if value >= 1.0 {
        format!("{value:.2} ms")
    } else if value >= 0.001 {
        format!("{:.1} us", value * 1000.0)
    } else {
        format!("{:.0} ns", value * 1e6)
    }
}
