//! `warmcache precompile`: compile many files into the cache, in parallel, with progress.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::{InputKind, Outcome, input_kind};
use crate::config::Settings;
use warmcache_wasmtime::{ComponentCache, ModuleCache, Precompiled};

/// Arguments of `warmcache precompile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files (any name) and directories (searched recursively for *.wasm).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Compile every file for each of these CPU levels (such as
    /// x86-64-v2,x86-64-v3,x86-64-v4, or aarch64,aarch64-lse) instead of for the configured
    /// engine: what nodes with `cpu_level` look up.
    #[arg(long, value_name = "LEVELS", value_delimiter = ',', value_parser = parse_level)]
    cpu_levels: Vec<warmcache_wasmtime::CpuLevel>,
}

fn parse_level(name: &str) -> Result<warmcache_wasmtime::CpuLevel, String> {
    warmcache_wasmtime::CpuLevel::named(name).ok_or_else(|| {
        let known: Vec<&str> = warmcache_wasmtime::CpuLevel::ALL
            .iter()
            .map(|l| l.name())
            .collect();
        format!(
            "unknown CPU level {name:?} (expected one of {})",
            known.join(", ")
        )
    })
}

/// A file to compile, or a path that could not be read while collecting.
enum Item {
    File(PathBuf),
    Unreadable(PathBuf, std::io::Error),
}

/// Collects the files under the given roots: a root is followed wherever it points, but below
/// it only real directories and regular `*.wasm` files are taken (no symlink is followed, so a
/// loop cannot make the walk explode, and a FIFO or device is never opened), and each directory
/// is entered once.
fn collect_roots(roots: &[PathBuf]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut visited = std::collections::HashSet::new();
    for root in roots {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => walk(root, &meta, &mut visited, &mut out),
            Ok(_) => out.push(Item::File(root.clone())),
            Err(e) => out.push(Item::Unreadable(root.clone(), e)),
        }
    }
    out
}

fn walk(
    dir: &Path,
    meta: &std::fs::Metadata,
    visited: &mut std::collections::HashSet<(u64, u64)>,
    out: &mut Vec<Item>,
) {
    use std::os::unix::fs::MetadataExt;
    if !visited.insert((meta.dev(), meta.ino())) {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return out.push(Item::Unreadable(dir.to_owned(), e)),
    };
    let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    children.sort();
    for child in children {
        match std::fs::symlink_metadata(&child) {
            Ok(meta) if meta.is_dir() => walk(&child, &meta, visited, out),
            Ok(meta) if meta.is_file() && child.extension().is_some_and(|e| e == "wasm") => {
                out.push(Item::File(child));
            }
            Ok(meta) if child.extension().is_some_and(|e| e == "wasm") => {
                tracing::info!(
                    path = %child.display(),
                    "skipped: not a regular file ({:?}); links below a directory given are not followed",
                    meta.file_type()
                );
            }
            Ok(_) => {}
            Err(e) => out.push(Item::Unreadable(child, e)),
        }
    }
}

/// The files under `roots` (as [`collect_roots`] finds them), or the first path that could not
/// be read.
pub(super) fn collect(roots: &[PathBuf]) -> Vec<Result<PathBuf, (PathBuf, std::io::Error)>> {
    collect_roots(roots)
        .into_iter()
        .map(|item| match item {
            Item::File(path) => Ok(path),
            Item::Unreadable(path, e) => Err((path, e)),
        })
        .collect()
}

/// Reads a regular file without ever waiting on it: opened non-blocking (a FIFO or device would
/// otherwise wait for a writer), then checked on the open descriptor.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file ({:?})", meta.file_type()),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Files compiled, found cached, and failed, counted from the worker threads.
#[derive(Default)]
struct Tally {
    compiled: AtomicU64,
    cached: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn count(&self, outcome: Result<Precompiled, String>, bar: &ProgressBar) {
        match outcome {
            Ok(done) if done.already_cached => {
                self.cached.fetch_add(1, Relaxed);
            }
            Ok(_) => {
                self.compiled.fetch_add(1, Relaxed);
            }
            Err(message) => {
                self.failed.fetch_add(1, Relaxed);
                // `suspend` prints above the bar, and also when the bar is hidden (no terminal).
                bar.suspend(|| eprintln!("failed: {message}"));
            }
        }
        bar.inc(1);
    }
}

pub fn run(settings: &Settings, args: Args) -> Outcome {
    let items = collect_roots(&args.paths);
    let stack = super::open(settings)?;
    // Filling tiers: a full upload queue makes compiling wait, it never drops an upload.
    let modules = stack.module_cache_over(stack.filling());
    let components = stack.component_cache_over(stack.filling());
    let engines = engines(settings, &args, (&modules, &components))?;
    let jobs: Vec<(&Item, &wasmtime::Engine)> = items
        .iter()
        .flat_map(|item| engines.iter().map(move |engine| (item, engine)))
        .collect();
    let keys = std::sync::Mutex::new(Vec::new());

    let started = Instant::now();
    let tally = Tally::default();
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    jobs.par_iter().for_each(|&(item, engine)| {
        let outcome = match item {
            Item::Unreadable(path, e) => Err(format!("{}: {e}", path.display())),
            Item::File(path) => {
                bar.set_message(path.display().to_string());
                precompile_file(path, engine, (&modules, &components))
                    .inspect(|done| {
                        if let Ok(mut keys) = keys.lock() {
                            keys.push((path.clone(), done.key));
                        }
                    })
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
        };
        tally.count(outcome, &bar);
    });
    bar.finish_and_clear();
    modules.flush();
    components.flush();
    if let Err(e) = crate::history::record(
        &settings.cache_dir.value,
        &[modules.stats(), components.stats()],
        None,
        None,
    ) {
        tracing::warn!("could not record stats: {e}");
    }
    let keys = keys.into_inner().unwrap_or_default();
    let missing = arrivals(&stack, &keys);
    for (path, tier) in &missing {
        eprintln!("not stored: {} in {tier}", path.display());
    }
    let failed = tally.failed.load(Relaxed);
    let levels = match args.cpu_levels.len() {
        0 => String::new(),
        n => format!(" x {n} CPU levels"),
    };
    println!(
        "{} files{levels}: {} compiled, {} already cached, {failed} failed, in {:.2} s",
        items.len(),
        tally.compiled.load(Relaxed),
        tally.cached.load(Relaxed),
        started.elapsed().as_secs_f64()
    );
    if !missing.is_empty() {
        println!(
            "{} entries did not reach a writable tier (see above)",
            missing.len()
        );
    }
    Ok(if failed > 0 || !missing.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The engines to compile for: the configured one, or one per CPU level asked for, each
/// registered with both caches (its key and its description).
fn engines(
    settings: &Settings,
    args: &Args,
    (modules, components): (&ModuleCache, &ComponentCache),
) -> Result<Vec<wasmtime::Engine>, Box<dyn std::error::Error>> {
    if args.cpu_levels.is_empty() {
        let configured = super::engine(settings)?;
        configured.pin(modules);
        configured.pin(components);
        return Ok(vec![configured.engine]);
    }
    let mut engines = Vec::new();
    for level in &args.cpu_levels {
        let (engine, key) = settings.engine.level_engine(*level)?;
        let described = settings.engine.described_level(*level);
        modules.pin_engine_key(&engine, key);
        components.pin_engine_key(&engine, key);
        modules.describe_engine(&engine, described.clone());
        components.describe_engine(&engine, described);
        engines.push(engine);
    }
    Ok(engines)
}

/// Precompiles the module or component in `path` for `engine`.
fn precompile_file(
    path: &Path,
    engine: &wasmtime::Engine,
    (modules, components): (&ModuleCache, &ComponentCache),
) -> Result<Precompiled, String> {
    let bytes = read_regular(path).map_err(|e| e.to_string())?;
    let done = match input_kind(&bytes) {
        InputKind::Module => modules.precompile(engine, &bytes),
        InputKind::Component => components.precompile(engine, &bytes),
    };
    done.map_err(|e| e.to_string())
}

/// Checks that every precompiled entry is in every writable tier, and copies it from another
/// tier where it is missing (an entry found cached in a local tier is not uploaded by
/// compiling). Returns the `(file, tier)` pairs still missing: a precompile never reports success
/// with the bucket left unfilled.
fn arrivals(
    stack: &crate::stack::Stack,
    keys: &[(PathBuf, warmcache_core::CacheKey)],
) -> Vec<(PathBuf, String)> {
    use futures::executor::block_on;
    let mut missing = Vec::new();
    for (path, key) in keys {
        for tier in stack.tiers.iter().filter(|t| !t.read_only) {
            if block_on(tier.backend.contains(key)).unwrap_or(false) {
                continue;
            }
            let copied = stack.tiers.iter().any(|source| {
                let Ok(Some(bytes)) = block_on(source.backend.get(key)) else {
                    return false;
                };
                // Verified, and as the target tier takes it: with the current MAC even if a
                // previous secret sealed it, or signed for a signed tier.
                stack
                    .integrity
                    .reseal_for(source.trust(), tier.trust(), key, &bytes)
                    .is_ok_and(|bytes| block_on(tier.backend.put(key, bytes)).is_ok())
            });
            if !copied {
                missing.push((path.clone(), tier.label.clone()));
            }
        }
    }
    missing
}
