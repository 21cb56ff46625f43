//! `warmcache prefetch`: warms a new host from the fleet's shared tiers. Every entry of a shared
//! tier that this host's configuration looks up (its engine's key, or its CPU levels') is read
//! through the tier stack, verified as any hit is, and promoted into the local tiers, most
//! recently written first; what is already local is skipped, so a run that was interrupted
//! resumes where it stopped. With `--manifest`, only the modules it lists.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use futures::StreamExt;
use futures::executor::block_on;
use warmcache_core::{Backend, BackendExt, CacheKey, KeyInfo, Tiered};
use warmcache_wasmtime::{ArtifactKind, ComponentCache, ContentHash, ModuleCache};

use super::Outcome;
use crate::config::Settings;
use crate::size::{Size, human};
use crate::stack::OpenTier;

/// Trailer reads in flight at once while listing a shared tier.
const READS_IN_FLIGHT: usize = 16;
/// Entries copied at once (each a download from the shared tier and a local write).
const COPIES_IN_FLIGHT: usize = 4;
/// The share of the smallest local tier's capacity a prefetch fills at most: a tier over its
/// capacity evicts down to about this much, and would take what was just copied.
const ROOM: f64 = 0.9;

/// Arguments of `warmcache prefetch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Copy at most this many bytes (such as 2GiB): the most recently written entries first.
    #[arg(long, value_name = "SIZE", value_parser = crate::size::parse)]
    max_size: Option<Size>,
    /// Copy only the modules and components FILE lists, one per line: a wasm file's path
    /// (relative to FILE's directory) or its content hash (64 hex digits, as `explain` prints
    /// it). Blank lines and lines starting with `#` are skipped.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

/// An entry of a shared tier that this host looks up.
struct Wanted {
    key: CacheKey,
    kind: ArtifactKind,
    /// Its size in a local tier: the entry with its payload decompressed (shared tiers
    /// usually compress, local ones do not).
    size: u64,
    created_ms: u64,
    content: ContentHash,
}

pub fn run(settings: &Settings, args: Args) -> Outcome {
    let manifest = args.manifest.as_deref().map(read_manifest).transpose()?;
    let stack = super::open_all(settings, false)?;
    let (shared, local) = split(&stack.tiers)?;
    let configured = super::engine(settings)?;
    let modules = stack.module_cache_over(stack.filling());
    let components = stack.component_cache_over(stack.filling());
    configured.pin(&modules);
    configured.pin(&components);
    let caches = Caches {
        engine: &configured.engine,
        modules: &modules,
        components: &components,
    };

    let started = Instant::now();
    let wanted = block_on(caches.wanted_newest_first(&shared, manifest.as_ref()))?;
    let room = local
        .iter()
        .filter_map(|t| t.backend.capabilities().capacity)
        .map(|capacity| (capacity as f64 * ROOM) as u64)
        .min();
    let budget = match (args.max_size.map(|s| s.0), room) {
        (Some(max), Some(room)) => Some(max.min(room)),
        (max, room) => max.or(room),
    };
    let plan = block_on(plan(&wanted, &local, budget));
    let read = block_on(copy(modules.tiers(), &plan.copy));
    modules.flush();
    // Verified and written: a write to a local tier that failed is counted, not returned.
    let copied: Vec<(&Wanted, bool)> = read
        .into_iter()
        .map(|(w, found)| (w, found && block_on(is_local(&w.key, &local))))
        .collect();
    let absent = manifest
        .as_ref()
        .map(|m| m.absent(&wanted))
        .unwrap_or_default();
    let done = report(&wanted, &plan, &copied, &absent, started);
    Ok(if done {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The shared tiers to copy from and the writable local ones to copy into, or why there are
/// none.
fn split(tiers: &[OpenTier]) -> Result<(Vec<&OpenTier>, Vec<&OpenTier>), String> {
    let (shared, local): (Vec<&OpenTier>, Vec<&OpenTier>) =
        tiers.iter().partition(|t| t.config.kind.is_remote());
    if shared.is_empty() {
        return Err(
            "prefetch copies from the shared tiers (s3, http and the other object \
                    stores), and none is configured"
                .to_owned(),
        );
    }
    let local: Vec<&OpenTier> = local.into_iter().filter(|t| !t.read_only).collect();
    if local.is_empty() {
        return Err(
            "prefetch copies into the local tiers (fs, redb, rocksdb), and no \
                    writable one is configured"
                .to_owned(),
        );
    }
    Ok((shared, local))
}

/// Says what failed and what was done; whether everything was.
fn report(
    wanted: &[Wanted],
    plan: &Plan<'_>,
    copied: &[(&Wanted, bool)],
    absent: &[String],
    started: Instant,
) -> bool {
    let missing: Vec<&Wanted> = copied
        .iter()
        .filter(|(_, arrived)| !arrived)
        .map(|(w, _)| *w)
        .collect();
    let bytes: u64 = copied
        .iter()
        .filter(|(_, arrived)| *arrived)
        .map(|(w, _)| w.size)
        .sum();
    for w in &missing {
        eprintln!(
            "not copied: {} {} ({}): it did not verify or could not be written; see the log",
            w.kind, w.key, w.content
        );
    }
    for label in absent {
        eprintln!("not in any shared tier for this configuration: {label}");
    }
    println!(
        "{} entries this host loads in the shared tiers: {} copied ({}), {} already local, \
         {} left out (over --max-size or the local tiers' room), {} failed, in {:.1} s",
        wanted.len(),
        copied.len() - missing.len(),
        human(bytes),
        plan.local,
        plan.over,
        missing.len(),
        started.elapsed().as_secs_f64()
    );
    missing.is_empty() && absent.is_empty()
}

/// The caches whose keys this host looks up.
struct Caches<'a> {
    engine: &'a wasmtime::Engine,
    modules: &'a ModuleCache,
    components: &'a ComponentCache,
}

impl Caches<'_> {
    /// What this host looks up in the `shared` tiers (the manifest's modules, when there is
    /// one), newest first, each entry once.
    async fn wanted_newest_first(
        &self,
        shared: &[&OpenTier],
        manifest: Option<&Manifest>,
    ) -> Result<Vec<Wanted>, String> {
        let mut wanted = Vec::new();
        for tier in shared {
            let found = match manifest {
                // A few requests per listed module, not a listing of the tier.
                Some(manifest) => self.listed_in(tier, manifest).await,
                None => self.wanted_in(tier).await,
            };
            wanted.extend(found.map_err(|e| format!("listing {}: {e}", tier.label))?);
        }
        wanted.sort_by_key(|w| Reverse(w.created_ms));
        let mut seen = HashSet::new();
        wanted.retain(|w| seen.insert(w.key));
        Ok(wanted)
    }

    /// The entries of `tier` this host looks up, from each entry's trailer (a ranged read).
    async fn wanted_in(&self, tier: &OpenTier) -> Result<Vec<Wanted>, warmcache_core::Error> {
        let backend = tier.backend();
        let listed = backend.list_all().await?;
        let bar = crate::progress::bar(listed.len() as u64, &tier.label);
        let found = futures::stream::iter(&listed)
            .map(|info| self.wanted(backend.as_ref(), *info))
            .buffer_unordered(READS_IN_FLIGHT)
            .inspect(|_| bar.inc(1))
            .filter_map(|w| async move { w })
            .collect()
            .await;
        bar.finish_and_clear();
        Ok(found)
    }

    /// The entries of `tier` for the manifest's modules: for each, the first of the keys this
    /// host looks up (as a module, then as a component) that the tier holds, found by a
    /// one-entry listing from just before it (which gives its size) and its trailer.
    async fn listed_in(
        &self,
        tier: &OpenTier,
        manifest: &Manifest,
    ) -> Result<Vec<Wanted>, warmcache_core::Error> {
        let backend = tier.backend();
        let mut found = Vec::new();
        for content in manifest.contents.keys() {
            let keys = self.modules.keys_for(self.engine, content).into_iter();
            for key in keys.chain(self.components.keys_for(self.engine, content)) {
                let page = backend.list(before(&key), 1).await?;
                let Some(info) = page.entries.first().filter(|info| info.key == key) else {
                    continue;
                };
                if let Some(w) = self.wanted(backend.as_ref(), *info).await {
                    found.push(w);
                    break;
                }
            }
        }
        Ok(found)
    }

    /// The entry `info` of `backend`, when this host looks it up (from its trailer).
    async fn wanted(&self, backend: &dyn Backend, info: KeyInfo) -> Option<Wanted> {
        let meta = super::ls::trailer(backend, &info).await?;
        let kind = ArtifactKind::from_envelope_kind(meta.kind)?;
        let content = match kind {
            ArtifactKind::Module => self.modules.wanted(self.engine, &info.key, &meta.inputs),
            ArtifactKind::Component => self.components.wanted(self.engine, &info.key, &meta.inputs),
        }?;
        let overhead = info.size - meta.payload_len.min(info.size);
        Some(Wanted {
            key: info.key,
            kind,
            size: overhead.saturating_add(meta.decoded_len),
            created_ms: meta.created_ms,
            content,
        })
    }
}

/// The key just before `key` in key order (a listing "after" it starts at `key`), or `None`
/// for the first key of all.
fn before(key: &CacheKey) -> Option<CacheKey> {
    let mut bytes = *key.as_bytes();
    for byte in bytes.iter_mut().rev() {
        if *byte > 0 {
            *byte -= 1;
            return Some(CacheKey::from_bytes(bytes));
        }
        *byte = 0xff;
    }
    None
}

/// What to copy, and what not.
struct Plan<'a> {
    copy: Vec<&'a Wanted>,
    /// Entries some local tier already holds.
    local: usize,
    /// Entries left out to stay within `--max-size` and the local tiers' room.
    over: usize,
}

/// Takes `wanted` in order, skipping what a local tier holds and what would go over `max`; the
/// copies are made in the reverse order, so the newest entries are the most recently used in
/// the local tiers and the last their eviction takes.
async fn plan<'a>(wanted: &'a [Wanted], local: &[&OpenTier], max: Option<u64>) -> Plan<'a> {
    let mut plan = Plan {
        copy: Vec::new(),
        local: 0,
        over: 0,
    };
    let mut budget = max.unwrap_or(u64::MAX);
    for w in wanted {
        if is_local(&w.key, local).await {
            plan.local += 1;
        } else if w.size > budget {
            plan.over += 1;
        } else {
            budget -= w.size;
            plan.copy.push(w);
        }
    }
    plan.copy.reverse();
    plan
}

/// Whether a local tier holds `key` (an error reading one counts as not).
async fn is_local(key: &CacheKey, local: &[&OpenTier]) -> bool {
    for tier in local {
        if tier.backend.contains(key).await.unwrap_or(false) {
            return true;
        }
    }
    false
}

/// Reads each entry through `tiers` (verified, then promoted into the local tiers) with a bar
/// of the bytes; each with whether a tier had it verified.
async fn copy<'a>(tiers: &Tiered, copy: &[&'a Wanted]) -> Vec<(&'a Wanted, bool)> {
    let total = copy.iter().map(|w| w.size).sum();
    let bar = crate::progress::bytes(total, "prefetch");
    let done = futures::stream::iter(copy)
        .map(|w| async {
            let entry = tiers.get(&w.key, w.kind.envelope_kind()).await;
            bar.inc(w.size);
            (*w, entry.is_some())
        })
        .buffer_unordered(COPIES_IN_FLIGHT)
        .collect()
        .await;
    bar.finish_and_clear();
    done
}

/// The modules a manifest lists, by content hash, with how each was named.
struct Manifest {
    contents: HashMap<ContentHash, String>,
}

impl Manifest {
    /// The lines naming a module no shared entry of this host's configuration holds.
    fn absent(&self, wanted: &[Wanted]) -> Vec<String> {
        let found: HashSet<ContentHash> = wanted.iter().map(|w| w.content).collect();
        let mut absent: Vec<String> = self
            .contents
            .iter()
            .filter(|(content, _)| !found.contains(content))
            .map(|(content, label)| format!("{label} ({content})"))
            .collect();
        absent.sort();
        absent
    }
}

fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the manifest {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut contents = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let content = match line.parse::<ContentHash>() {
            Ok(content) => content,
            Err(_) => {
                let file = dir.join(line);
                let wasm = super::precompile::read_regular(&file).map_err(|e| {
                    format!(
                        "{}:{}: {line:?} is neither a content hash nor a readable file: {e}",
                        path.display(),
                        n + 1
                    )
                })?;
                ContentHash::of(&wasm)
            }
        };
        contents.insert(content, line.to_owned());
    }
    Ok(Manifest { contents })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_before_borrows_across_bytes() {
        let key = |last: [u8; 2]| {
            let mut bytes = [0u8; 32];
            bytes[30..].copy_from_slice(&last);
            CacheKey::from_bytes(bytes)
        };
        assert_eq!(before(&key([0, 1])), Some(key([0, 0])));
        assert_eq!(before(&key([1, 0])), Some(key([0, 0xff])));
        assert_eq!(before(&key([0, 0])), None);
        let max = CacheKey::from_bytes([0xff; 32]);
        assert!(before(&max).is_some_and(|b| b < max));
    }
}
