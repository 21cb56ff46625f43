//! `warmcache compile-worker KIND`: the worker of isolated compiles (`isolate_compiles`). The
//! parent runs this program with its engine's settings as flags and the wasm on standard input;
//! the artifact goes to standard output (`warmcache_wasmtime::Isolation::serve`). The parent
//! bounds its time and memory (`warmcache_wasmtime::Isolation`).

use super::Outcome;
use crate::config::Settings;

pub fn run(settings: &Settings, kind: &str) -> Outcome {
    let engine = super::engine(settings)?;
    Ok(warmcache_wasmtime::Isolation::serve(
        engine.compiler(),
        engine.baseline.as_deref(),
        kind,
    ))
}
