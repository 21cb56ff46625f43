//! `warmcache audit`: recompiles a sample of a tier's entries from their wasm and compares the
//! artifacts byte for byte. A signature proves who produced an entry, not that the producer
//! compiled what the key says; wasmtime's output is deterministic for the same input and
//! settings (docs/BENCHMARKS.md "Determinism"), so anyone who can compile can check a
//! producer, even one whose key was stolen.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures::executor::block_on;
use rayon::prelude::*;
use warmcache_core::CacheKey;
use warmcache_wasmtime::ContentHash;

use super::{InputKind, Outcome, input_kind};
use crate::config::Settings;
use crate::stack::OpenTier;

/// Arguments of `warmcache audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The wasm whose entries are audited: files, and directories searched for *.wasm.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// A file listing wasm paths, one per line (relative ones from the file's directory;
    /// blank lines and lines starting with `#` are skipped).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Audit this percentage of the entries found, chosen at random (default: all).
    #[arg(long, value_name = "PERCENT", default_value_t = 100.0, value_parser = percent)]
    sample: f64,
    /// Audit only this tier: its kind (`fs`, `s3`, ...) or its label as `stats` shows it.
    #[arg(long, value_name = "NAME")]
    tier: Option<String>,
}

fn percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "expected a percentage above 0 and at most 100, got {s:?}"
        )),
    }
}

/// What auditing one entry found.
enum Finding {
    Same,
    Differs(String),
    /// The stored entry does not verify in its tier: not audited, reported as bad.
    Unverified(String),
    /// This wasm does not compile here (a bad file is not the producer's fault).
    Uncompilable(String),
}

/// The wasm paths named on the command line and in the manifest.
fn inputs(args: &Args) -> Result<Vec<PathBuf>, String> {
    let mut roots = args.paths.clone();
    if let Some(manifest) = &args.manifest {
        let text = std::fs::read_to_string(manifest)
            .map_err(|e| format!("reading the manifest {}: {e}", manifest.display()))?;
        let base = manifest.parent().unwrap_or(Path::new("."));
        roots.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| base.join(l)),
        );
    }
    if roots.is_empty() {
        return Err("nothing to audit: give wasm paths or --manifest".into());
    }
    let mut files = Vec::new();
    for item in super::precompile::collect(&roots) {
        files.push(item.map_err(|(path, e)| format!("{}: {e}", path.display()))?);
    }
    Ok(files)
}

/// A random `percent` of `items` (at least one when there are any).
fn sample<T>(mut items: Vec<T>, percent: f64) -> Vec<T> {
    if percent >= 100.0 || items.is_empty() {
        return items;
    }
    let keep = ((items.len() as f64 * percent / 100.0).ceil() as usize).max(1);
    let mut seed = [0u8; 32];
    if getrandom::fill(&mut seed).is_err() {
        seed[..8].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    }
    let mut order: Vec<(blake3::Hash, T)> = items
        .drain(..)
        .enumerate()
        .map(|(i, item)| (blake3::keyed_hash(&seed, &i.to_le_bytes()), item))
        .collect();
    order.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    order.into_iter().take(keep).map(|(_, item)| item).collect()
}

pub fn run(settings: &Settings, args: Args) -> Outcome {
    let files = inputs(&args)?;
    let stack = super::open_all(settings, true)?;
    let configured = super::engine(settings)?;
    let engine = &configured.engine;
    let modules = stack.module_cache();
    let components = stack.component_cache();
    configured.pin(&modules);
    configured.pin(&components);
    let tiers: Vec<&OpenTier> = stack
        .tiers
        .iter()
        .filter(|t| {
            args.tier
                .as_deref()
                .is_none_or(|n| n == t.label || n == t.config.kind.as_str())
        })
        .collect();
    if tiers.is_empty() {
        return Err(format!("no tier named {:?}", args.tier.unwrap_or_default()).into());
    }
    // Every (tier, file) whose entry is present, keyed as this configuration keys it.
    let mut present = Vec::new();
    for path in &files {
        let bytes = super::precompile::read_regular(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let kind = input_kind(&bytes);
        let key = match kind {
            InputKind::Module => modules.key_for(engine, &ContentHash::of(&bytes)),
            InputKind::Component => components.key_for(engine, &ContentHash::of(&bytes)),
        };
        for tier in &tiers {
            if block_on(tier.backend.contains(&key)).unwrap_or(false) {
                present.push((*tier, path, kind, key));
            }
        }
    }
    let found = present.len();
    let chosen = sample(present, args.sample);
    let bar = crate::progress::bar(chosen.len() as u64, "auditing");
    let findings: Vec<_> = chosen
        .par_iter()
        .map(|(tier, path, kind, key)| {
            let finding = audit_one(&stack.integrity, tier, engine, path, *kind, key);
            bar.inc(1);
            (tier.label.as_str(), *path, key, finding)
        })
        .collect();
    bar.finish_and_clear();
    let mut bad = 0;
    for (tier, path, key, finding) in &findings {
        let problem = match finding {
            Finding::Same => continue,
            Finding::Differs(why) => format!("MISMATCH: {why}"),
            Finding::Unverified(why) => format!("bad entry: {why}"),
            Finding::Uncompilable(why) => {
                println!("skipped: {tier} {key} {}: {why}", path.display());
                continue;
            }
        };
        bad += 1;
        println!("{problem}: {tier} {key} {}", path.display());
    }
    println!(
        "audited {} of {found} entries found for {} files in {} tier(s): {bad} bad",
        findings.len(),
        files.len(),
        tiers.len()
    );
    Ok(if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads `key`'s entry from `tier`, verifies it there, compiles `path` afresh and compares.
fn audit_one(
    integrity: &warmcache_core::Integrity,
    tier: &OpenTier,
    engine: &wasmtime::Engine,
    path: &Path,
    kind: InputKind,
    key: &CacheKey,
) -> Finding {
    let stored = match block_on(super::verify::read_without_use(tier, key)) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Finding::Unverified("gone since it was found".into()),
        Err(e) => return Finding::Unverified(format!("unreadable: {e}")),
    };
    let entry = match integrity.open_for(tier.trust(), key, None, &stored) {
        Ok(entry) => entry,
        Err(e) => return Finding::Unverified(e.to_string()),
    };
    let fresh = super::precompile::read_regular(path)
        .map_err(|e| e.to_string())
        .and_then(|wasm| {
            match kind {
                InputKind::Module => engine.precompile_module(&wasm),
                InputKind::Component => engine.precompile_component(&wasm),
            }
            .map_err(|e| format!("{e:#}"))
        });
    let fresh = match fresh {
        Ok(fresh) => fresh,
        Err(e) => return Finding::Uncompilable(e),
    };
    let stored = entry.payload();
    if stored == &fresh[..] {
        return Finding::Same;
    }
    let at = stored
        .iter()
        .zip(&fresh)
        .position(|(a, b)| a != b)
        .unwrap_or(stored.len().min(fresh.len()));
    let signer = entry
        .meta()
        .signer
        .as_deref()
        .unwrap_or("nobody (unsigned)");
    Finding::Differs(format!(
        "the stored artifact (signed by {signer}, {} bytes) differs from a fresh compile ({} \
         bytes) from byte {at}",
        stored.len(),
        fresh.len()
    ))
}
