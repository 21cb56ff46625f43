//! `warmcache explain FILE`: the key this configuration derives for FILE, field by field, and
//! every entry of the same wasm in every tier with the fields in which it differs.

use std::path::PathBuf;
use std::process::ExitCode;

use warmcache_wasmtime::{Explanation, WasmCache};

use super::{InputKind, Outcome, input_kind};
use crate::config::Settings;

/// Arguments of `warmcache explain`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The module or component (binary or text).
    file: PathBuf,
}

pub fn run(settings: &Settings, args: Args) -> Outcome {
    let wasm = super::precompile::read_regular(&args.file)
        .map_err(|e| format!("reading {}: {e}", args.file.display()))?;
    let stack = super::open(settings)?;
    let configured = super::engine(settings)?;
    let explanation = match input_kind(&wasm) {
        InputKind::Module => explain(&configured, &stack.module_cache(), &wasm)?,
        InputKind::Component => explain(&configured, &stack.component_cache(), &wasm)?,
    };
    print!("{}", render(&explanation));
    Ok(ExitCode::SUCCESS)
}

/// `cache`'s explanation of `wasm` under the configured engine.
pub fn explain<A: warmcache_wasmtime::Artifact>(
    configured: &super::Engine,
    cache: &WasmCache<A>,
    wasm: &[u8],
) -> Result<Explanation, warmcache_wasmtime::Error> {
    configured.pin(cache);
    cache.explain(&configured.engine, wasm)
}

fn render(explanation: &Explanation) -> String {
    let width = explanation
        .inputs
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut out = format!("key {}\n", explanation.key);
    for (name, value) in &explanation.inputs {
        out.push_str(&format!("  {name:width$}  {value}\n"));
    }
    if explanation.entries.is_empty() {
        out.push_str("not cached in any tier under any configuration\n");
    }
    for found in &explanation.entries {
        let what = if found.key == explanation.key {
            "this configuration's entry".to_owned()
        } else {
            found
                .differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        out.push_str(&format!("{} {}: {what}\n", found.tier, found.key));
    }
    for (tier, why) in &explanation.unsearched {
        out.push_str(&format!("{tier}: not searched completely: {why}\n"));
    }
    out
}
