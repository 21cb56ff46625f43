//! `warmcache bench`: how fast each tier warm-starts your modules on this machine, against a
//! cold compile and wasmtime's own cache, and which layout to use.
//!
//! Every measurement is repeated `--runs` times, interleaved (one sample of each, then the next
//! round) so drift in the machine's state spreads over all of them rather than biasing one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use serde::Serialize;
use warmcache_core::{Origin, Tier, Tiered};
use warmcache_wasmtime::{ArtifactKind, ContentHash, ModuleCache, Wasm};
use wasmtime::{Engine, Linker, Module, Store};

use super::Outcome;
use crate::config::{Settings, TierConfig, TierKind};
use crate::stack::Stack;

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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summarize(
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

/// The built-in module: 200 small functions with memory traffic, about 100 KB compiled.
fn builtin_module() -> Vec<u8> {
    let mut wat = String::from("(module (memory (export \"memory\") 1)\n");
    wat.push_str("(func (export \"_start\") (drop (call $f0 (i32.const 7))))\n");
    for i in 0..200 {
        wat.push_str(&format!(
            "(func $f{i} (export \"f{i}\") (param i32) (result i32) local.get 0 i32.const {i} \
             i32.mul i32.const 3 i32.shl i32.const 65535 i32.and i32.load)\n"
        ));
    }
    wat.push(')');
    wat.into_bytes()
}

/// Instantiates `module` with every import trapping and runs its start function (or first
/// export without parameters) until it returns or traps at its first host call.
fn first_call(engine: &Engine, module: &Module) -> bool {
    let mut linker = Linker::<()>::new(engine);
    if linker.define_unknown_imports_as_traps(module).is_err() {
        return false;
    }
    let mut store = Store::new(engine, ());
    let _ = store.set_fuel(u64::MAX);
    store.set_epoch_deadline(u64::MAX);
    let Ok(instance) = linker.instantiate(&mut store, module) else {
        return false;
    };
    let entry = ["_start", "_initialize"]
        .into_iter()
        .find_map(|name| instance.get_typed_func::<(), ()>(&mut store, name).ok());
    if let Some(entry) = entry {
        // A trap at the first host call is the expected end.
        let _ = entry.call(&mut store, ());
        return true;
    }
    let export = module.exports().find_map(|e| {
        let f = e.ty().func()?.clone();
        (f.params().len() == 0).then(|| e.name().to_owned())
    });
    if let Some(func) = export.and_then(|name| instance.get_func(&mut store, &name)) {
        let mut results = vec![wasmtime::Val::I32(0); func.ty(&store).results().len()];
        let _ = func.call(&mut store, &[], &mut results);
    }
    true
}

/// A warm-start measurement over one storage tier.
struct TierProbe {
    name: String,
    cache: ModuleCache,
}

/// Opens the measured tiers under `dir` (local ones) or at their URL (remote ones), each alone
/// in its own stack, with the file tier measured both mapped and as bytes.
fn probes(settings: &Settings, dir: &Path) -> Result<Vec<TierProbe>, Box<dyn std::error::Error>> {
    let mut probes = Vec::new();
    for (i, config) in settings.tiers.value.iter().enumerate() {
        let variants: &[(&str, bool)] = match config.kind {
            TierKind::Memory => continue,
            TierKind::Fs => &[("fs (mmap)", true), ("fs (bytes)", false)],
            TierKind::Redb => &[("redb", true)],
            TierKind::Rocksdb => &[("rocksdb", true)],
            TierKind::S3 => &[("s3", true)],
            TierKind::Http => &[("http", true)],
        };
        for (j, (name, files)) in variants.iter().enumerate() {
            let mut tier: TierConfig = config.clone();
            if !tier.kind.is_remote() {
                tier.path = Some(dir.join(format!("{i}-{j}-{}", tier.kind.as_str())));
            }
            tier.size = None;
            let one = Settings {
                tiers: crate::config::Sourced {
                    value: vec![tier],
                    source: settings.tiers.source.clone(),
                },
                ..settings.clone()
            };
            let stack = Stack::open(&one)?;
            let Some(open) = stack.tiers.first() else {
                return Err(format!("tier {} could not be opened", config.location()).into());
            };
            let backend = match (&open.fs, files) {
                (Some(_), false) => Arc::new(
                    warmcache_fs::FsBackend::builder(open.config.path.clone().unwrap_or_default())
                        .offer_files(false)
                        .open()?,
                ) as Arc<dyn warmcache_core::Backend>,
                _ => open.backend(),
            };
            let tiers = Tiered::builder()
                .tier(Tier::new(backend).name(open.label.clone()))
                .integrity(stack.integrity.clone())
                .build();
            probes.push(TierProbe {
                name: (*name).to_owned(),
                cache: ModuleCache::builder().tiers(tiers).live_capacity(0).build(),
            });
        }
    }
    Ok(probes)
}

fn measure_module(
    settings: &Settings,
    engine: &Engine,
    name: String,
    wasm: &[u8],
    args: &Args,
    dir: &Path,
) -> Result<ModuleReport, Box<dyn std::error::Error>> {
    let content = ContentHash::of(wasm);
    tracing::info!("{name}: compiling");
    let started = Instant::now();
    let artifact = engine
        .precompile_module(wasm)
        .map_err(|e| format!("compiling {name}: {e:#}"))?;
    let mut compile_samples = vec![ms(started.elapsed())];

    let probes = probes(settings, dir)?;
    let origin = Origin::new(ArtifactKind::Module.envelope_kind(), "warmcache bench")
        .compute_ms(compile_samples[0] as u64);
    for probe in &probes {
        let key = probe.cache.key_for(engine, &content);
        block_on(probe.cache.tiers().put(&key, &origin, &artifact));
        probe.cache.flush();
    }
    let live = ModuleCache::builder().build();
    live.get_or_compile(engine, wasm)?;

    let wasmtime_dir = dir.join("wasmtime-cache");
    let mut cache_config = wasmtime::CacheConfig::new();
    cache_config.with_directory(&wasmtime_dir);
    let mut config = settings.engine.wasmtime_config()?;
    config.cache(Some(wasmtime::Cache::new(cache_config)?));
    let cached_engine = Engine::new(&config)?;
    tracing::info!("{name}: filling wasmtime's cache");
    Module::new(&cached_engine, wasm)?;

    let (mut hashed, mut unhashed, mut wasmtime_cache, mut wasmtime_first) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tier_samples = vec![(Vec::new(), Vec::new()); probes.len()];
    let batch = 1000u32;
    for run in 0..args.runs {
        tracing::info!("{name}: run {}/{}", run + 1, args.runs);
        if run > 0 && run < args.compile_runs {
            let started = Instant::now();
            engine.precompile_module(wasm)?;
            compile_samples.push(ms(started.elapsed()));
        }
        let started = Instant::now();
        for _ in 0..batch {
            live.get_or_compile(
                engine,
                Wasm::hashed(content, || -> std::io::Result<Vec<u8>> {
                    Ok(wasm.to_vec())
                }),
            )?;
        }
        hashed.push(ms(started.elapsed()) / f64::from(batch));
        let rounds = if wasm.len() > 1 << 20 { 3 } else { batch };
        let started = Instant::now();
        for _ in 0..rounds {
            live.get_or_compile(engine, wasm)?;
        }
        unhashed.push(ms(started.elapsed()) / f64::from(rounds));
        for (probe, (loads, firsts)) in probes.iter().zip(tier_samples.iter_mut()) {
            let started = Instant::now();
            let stored = || -> std::io::Result<Vec<u8>> {
                Err(std::io::Error::other(
                    "the artifact should have been stored",
                ))
            };
            let module = probe
                .cache
                .get_or_compile(engine, Wasm::hashed(content, stored))?;
            loads.push(ms(started.elapsed()));
            if first_call(engine, &module) {
                firsts.push(ms(started.elapsed()));
            }
        }
        let started = Instant::now();
        let module = Module::new(&cached_engine, wasm)?;
        wasmtime_cache.push(ms(started.elapsed()));
        if first_call(&cached_engine, &module) {
            wasmtime_first.push(ms(started.elapsed()));
        }
    }
    for probe in &probes {
        let stats = probe.cache.stats();
        if stats.computes > 0 || stats.decode_errors > 0 {
            return Err(format!("{name}: tier {} did not answer", probe.name).into());
        }
    }
    let mut measurements = vec![
        summarize("compile".into(), "compile", compile_samples, Vec::new()),
        summarize(
            "memory (hash supplied)".into(),
            "memory",
            hashed,
            Vec::new(),
        ),
        summarize(
            "memory (hashing wasm)".into(),
            "memory",
            unhashed,
            Vec::new(),
        ),
    ];
    for (probe, (loads, firsts)) in probes.iter().zip(tier_samples) {
        measurements.push(summarize(probe.name.clone(), "tier", loads, firsts));
    }
    measurements.push(summarize(
        "wasmtime's cache".into(),
        "wasmtime-cache",
        wasmtime_cache,
        wasmtime_first,
    ));
    let loaded = live.get_or_compile(engine, wasm)?;
    let instantiation =
        measure_instantiation(settings, engine, &loaded, wasm, &artifact, args, dir)
            .map_err(|e| format!("{name}: measuring instantiation: {e}"))?;
    Ok(ModuleReport {
        name,
        wasm_bytes: wasm.len() as u64,
        artifact_bytes: artifact.len() as u64,
        measurements,
        instantiation,
    })
}

/// Instantiations timed per sample: enough for about 20 ms, at least 3.
fn instantiations_per_sample(once: Duration) -> u32 {
    let per = once.as_secs_f64().max(1e-7);
    (0.02 / per).clamp(3.0, 10_000.0) as u32
}

/// Times fresh instances of the stored artifact: from the instance cache with the pooling
/// helper's engine over a file tier (mapped, copy-on-write memory), and with the configured
/// engine's default allocator through `Linker::instantiate`. Imports are defined as traps.
fn measure_instantiation(
    settings: &Settings,
    engine: &Engine,
    default_module: &Module,
    wasm: &[u8],
    artifact: &[u8],
    args: &Args,
    dir: &Path,
) -> Result<Vec<Measurement>, Box<dyn std::error::Error>> {
    let content = ContentHash::of(wasm);
    let mut pool = warmcache_wasmtime::PoolConfig::new();
    pool.live_instances(4).module(wasm)?;
    let pooled = Engine::new(pool.apply(&mut settings.engine.wasmtime_config()?))?;
    let files = Arc::new(warmcache_fs::FsBackend::builder(dir.join("instances")).open()?);
    let instances = warmcache_wasmtime::ModuleInstances::<()>::new(ModuleCache::new(
        Tiered::builder().tier(Tier::new(files)).build(),
    ));
    let origin = Origin::new(ArtifactKind::Module.envelope_kind(), "warmcache bench");
    let key = instances.artifacts().key_for(&pooled, &content);
    block_on(instances.artifacts().tiers().put(&key, &origin, artifact));
    let stored = || -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::other(
            "the artifact should have been stored",
        ))
    };
    let module = instances
        .artifacts()
        .get_or_compile(&pooled, Wasm::hashed(content, stored))?;
    let mut linker = Linker::<()>::new(&pooled);
    linker.define_unknown_imports_as_traps(&module)?;
    let linker = warmcache_wasmtime::NamedLinker::new(linker, "traps", 1);
    let pre = instances.instance_pre(&linker, Wasm::hashed(content, stored))?;
    if instances.artifacts().stats().computes > 0 {
        return Err("the file tier did not answer".into());
    }

    let mut default_linker = Linker::<()>::new(engine);
    default_linker.define_unknown_imports_as_traps(default_module)?;

    let time = |instantiate: &dyn Fn() -> Result<(), Box<dyn std::error::Error>>| {
        let started = Instant::now();
        instantiate()?;
        let per_sample = instantiations_per_sample(started.elapsed());
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            let started = Instant::now();
            for _ in 0..per_sample {
                instantiate()?;
            }
            samples.push(ms(started.elapsed()) / f64::from(per_sample));
        }
        Ok::<_, Box<dyn std::error::Error>>(samples)
    };
    let cached = time(&|| {
        let mut store = Store::new(&pooled, ());
        let _ = store.set_fuel(u64::MAX);
        pre.instantiate(&mut store)?;
        Ok(())
    })?;
    let plain = time(&|| {
        let mut store = Store::new(engine, ());
        let _ = store.set_fuel(u64::MAX);
        default_linker.instantiate(&mut store, default_module)?;
        Ok(())
    })?;
    Ok(vec![
        summarize(
            "instance cache (pooling, file tier)".into(),
            "instantiate",
            cached,
            Vec::new(),
        ),
        summarize(
            "Linker::instantiate (default allocator)".into(),
            "instantiate",
            plain,
            Vec::new(),
        ),
    ])
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

fn print_table(report: &Report) {
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

fn print_markdown(report: &Report) {
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
