//! `warmcache pin FILE...` and `warmcache unpin FILE...`: keep the compiled artifacts of
//! modules from eviction in the local tiers that keep pins (file tiers, redb, RocksDB), or let
//! eviction take them again. Pinning compiles (or loads) first, so there is an entry to pin.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use warmcache_core::backend::MAX_PINNED_SHARE;

use super::{InputKind, Outcome, input_kind};
use crate::config::Settings;
use crate::size::human;

pub fn run(settings: &Settings, files: &[PathBuf], pinned: bool) -> Outcome {
    let stack = super::open_all(settings, false)?;
    let keeps_pins = stack
        .tiers
        .iter()
        .any(|t| !t.read_only && t.backend.capabilities().pins);
    if !keeps_pins {
        return Err(
            "no configured tier keeps pins: pins live in local tiers (fs, redb, rocksdb)".into(),
        );
    }
    let configured = super::engine(settings)?;
    let modules = stack.module_cache();
    let components = stack.component_cache();
    configured.pin(&modules);
    configured.pin(&components);
    let mut failed = 0;
    for file in files {
        match pin_file(file, &configured.engine, (&modules, &components), pinned) {
            Ok((line, ok)) => {
                println!("{line}");
                failed += usize::from(!ok);
            }
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                failed += 1;
            }
        }
    }
    modules.flush();
    components.flush();
    Ok(match failed {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Pins or unpins one file's artifact: the line that says where, and whether every tier did.
fn pin_file(
    file: &Path,
    engine: &wasmtime::Engine,
    (modules, components): (
        &warmcache_wasmtime::ModuleCache,
        &warmcache_wasmtime::ComponentCache,
    ),
    pinned: bool,
) -> Result<(String, bool), String> {
    let wasm = super::precompile::read_regular(file).map_err(|e| e.to_string())?;
    let tiers = match input_kind(&wasm) {
        InputKind::Module => modules.pin(engine, wasm.as_slice(), pinned),
        InputKind::Component => components.pin(engine, wasm.as_slice(), pinned),
    }
    .map_err(|e| e.to_string())?;
    let verb = if pinned { "pinned" } else { "unpinned" };
    let mut done = Vec::new();
    let mut ok = true;
    for (tier, outcome) in tiers {
        match outcome {
            Ok(true) => done.push(format!("{verb} in {tier}")),
            Ok(false) => done.push(format!("not in {tier}")),
            Err(warmcache_core::Error::Capacity { size, limit, .. }) => {
                ok = false;
                done.push(format!(
                    "refused in {tier}: its pinned entries would take {}, over the {} pins may \
                     take ({:.0}% of its capacity); unpin others or give it more room",
                    human(size),
                    human(limit),
                    MAX_PINNED_SHARE * 100.0
                ));
            }
            Err(e) => {
                ok = false;
                done.push(format!("failed in {tier}: {e}"));
            }
        }
    }
    Ok((format!("{}: {}", file.display(), done.join("; ")), ok))
}
