//! `warmcache bench`: how fast each tier warm-starts your modules on this machine, against a
//! cold compile and wasmtime's own cache, and which layout to use.
//!
//! Every measurement is repeated `--runs` times, interleaved (one sample of each, then the next
//! round) so drift in the machine's state spreads over all of them rather than biasing one.
//!
//! `measure.rs` takes the samples; `report.rs` summarizes, recommends and prints.

mod measure;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use super::Outcome;
use crate::config::Settings;
use measure::{builtin_module, measure_module};
use report::{Machine, print_markdown, print_table, recommend};
pub use report::{Report, format_ms};

/// Arguments of `warmcache bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Modules to measure (default: a built-in small module).
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Also measure the built-in module when files are given.
    #[arg(long)]
    builtin: bool,
    /// Samples of each warm start.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Samples of the cold compile (each is a whole compile).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    compile_runs: u32,
    /// Print JSON instead of tables.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print Markdown tables instead of the terminal table.
    #[arg(long)]
    markdown: bool,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Write a bar chart (SVG) of the medians to FILE.
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
}

pub fn run(settings: &Settings, args: Args) -> Outcome {
    if settings.engine.target.value.is_some() {
        return Err("`bench` measures this host: run it without a configured target".into());
    }
    let engine = super::engine(settings)?.engine;
    let mut inputs = Vec::new();
    if args.files.is_empty() || args.builtin {
        inputs.push(("built-in".to_owned(), builtin_module()));
    }
    for file in &args.files {
        let wasm = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        let name = file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        inputs.push((name, wasm));
    }
    warmcache_core::files::create_cache_dir_all(&settings.cache_dir.value)
        .map_err(|e| format!("creating {}: {e}", settings.cache_dir.value.display()))?;
    // Local tiers are measured in a scratch directory next to the cache, on the same disk.
    let scratch = tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(&settings.cache_dir.value)
        .map_err(|e| format!("creating a scratch directory: {e}"))?;
    let mut modules = Vec::new();
    for (i, (name, wasm)) in inputs.into_iter().enumerate() {
        let dir = scratch.path().join(i.to_string());
        modules.push(measure_module(settings, &engine, name, &wasm, &args, &dir)?);
    }
    let report = Report {
        machine: Machine {
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            wasmtime: warmcache_wasmtime::WASMTIME_VERSION,
        },
        runs: args.runs,
        recommendation: recommend(&modules),
        modules,
    };
    if let Some(path) = &args.chart {
        crate::chart::write(path, &report)?;
    }
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.markdown {
        print_markdown(&report);
    } else {
        print_table(&report);
        if let Some(path) = &args.chart {
            println!("\nchart written to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
