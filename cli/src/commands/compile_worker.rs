//! `warmcache compile-worker KIND`: the worker of isolated compiles (`isolate_compiles`). The
//! parent runs this program with its engine's settings as flags and the wasm on standard input;
//! the artifact goes to standard output. The parent bounds its time and memory
//! (`warmcache_wasmtime::Isolation`).

use std::io::{Read, Write};
use std::process::ExitCode;

use super::Outcome;
use crate::config::Settings;

pub fn run(settings: &Settings, kind: &str) -> Outcome {
    let mut wasm = Vec::new();
    std::io::stdin().lock().read_to_end(&mut wasm)?;
    let engine = super::engine(settings)?.engine;
    let artifact = match kind {
        "module" => engine.precompile_module(&wasm),
        "component" => engine.precompile_component(&wasm),
        other => return Err(format!("unknown artifact kind {other:?}").into()),
    }
    .map_err(|e| format!("{e:#}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&artifact)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
