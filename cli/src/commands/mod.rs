//! One module per subcommand, and what they share.

pub mod audit;
pub mod bench;
pub mod clear;
pub mod compile_worker;
pub mod config;
pub mod explain;
pub mod gc;
pub mod keygen;
pub mod ls;
pub mod pin;
pub mod precompile;
pub mod prefetch;
pub mod run;
pub mod stats;
pub mod verify;

use std::process::ExitCode;

use crate::config::Settings;
use crate::stack::Stack;

/// What a command returns: its exit code, or an error printed as `error: ...`.
pub type Outcome = Result<ExitCode, Box<dyn std::error::Error>>;

/// What a wasm input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Module,
    Component,
}

/// Tells modules from components: a binary by wasmtime's parser (wasmparser's header check),
/// the text format by its first form. Only the head of a file is needed, so `run` decides
/// without reading a file whose hash is remembered.
pub fn input_kind(bytes: &[u8]) -> InputKind {
    if wasmparser::Parser::is_component(bytes) {
        return InputKind::Component;
    }
    if wasmparser::Parser::is_core_wasm(bytes) || bytes.starts_with(b"\0asm") {
        return InputKind::Module;
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let mut rest = text.trim_start();
    // Skip line and block comments before the first form.
    loop {
        if let Some(after) = rest.strip_prefix(";;") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("(;") {
            rest = after.split_once(";)").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    if rest.starts_with("(component") {
        InputKind::Component
    } else {
        InputKind::Module
    }
}

/// The engine for the configured settings.
pub fn engine(settings: &Settings) -> Result<Engine, Box<dyn std::error::Error>> {
    let config = settings.engine.wasmtime_config()?;
    let engine =
        wasmtime::Engine::new(&config).map_err(|e| format!("configuring wasmtime: {e:#}"))?;
    let pinned = settings.engine.pinned_key()?;
    let levels = settings.engine.cpu_levels()?.map(std::sync::Arc::new);
    let baseline = settings.engine.baseline()?.map(std::sync::Arc::new);
    Ok(Engine {
        engine,
        pinned,
        levels,
        baseline,
        described: settings.engine.described(),
    })
}

/// The configured engine, and the keys its caches use when a target or CPU levels are
/// configured.
pub struct Engine {
    pub engine: wasmtime::Engine,
    pinned: Option<warmcache_wasmtime::EngineKey>,
    /// With `cpu_level`: the levels looked up, and which answered.
    pub levels: Option<std::sync::Arc<warmcache_wasmtime::CpuLevels>>,
    /// With `cold_start = "baseline"`: the Winch engine, and what baseline code did.
    pub baseline: Option<std::sync::Arc<warmcache_wasmtime::Baseline>>,
    /// The settings recorded in entries.
    described: Vec<(String, String)>,
}

impl Engine {
    /// Makes `cache` derive this engine's keys from the configured target (see
    /// `CompileTarget::engine_key`), so nodes with the same target and settings, compiling or
    /// not, share entries; or look them up by CPU level; and answer a cold miss with baseline
    /// code when `cold_start` says so.
    pub fn pin<A: warmcache_wasmtime::Artifact>(&self, cache: &warmcache_wasmtime::WasmCache<A>) {
        if let Some(key) = self.pinned {
            cache.pin_engine_key(&self.engine, key);
        }
        if let Some(levels) = &self.levels {
            cache.use_cpu_levels(&self.engine, std::sync::Arc::clone(levels));
        }
        cache.describe_engine(&self.engine, self.described.clone());
        if let Some(baseline) = &self.baseline {
            cache.use_baseline(&self.engine, std::sync::Arc::clone(baseline));
        }
    }

    /// The engine that compiles on a miss: the best CPU level's, or this one.
    pub fn compiler(&self) -> &wasmtime::Engine {
        self.levels
            .as_ref()
            .map_or(&self.engine, |levels| levels.compiler())
    }

    /// Whether code from this engine can run on this host.
    pub fn runs_here(settings: &Settings) -> bool {
        settings
            .engine
            .target
            .value
            .as_deref()
            .is_none_or(|t| t == warmcache_wasmtime::CompileTarget::host_triple())
    }
}

/// Opens the configured tiers.
pub fn open(settings: &Settings) -> Result<Stack, Box<dyn std::error::Error>> {
    Ok(Stack::open(settings)?)
}

/// Opens every configured tier for a maintenance command, failing naming any that could not
/// be opened: clearing, checking or collecting fewer tiers than configured is not success.
/// With `as_is`, a damaged database is reported rather than moved aside (for `verify`).
pub fn open_all(settings: &Settings, as_is: bool) -> Result<Stack, Box<dyn std::error::Error>> {
    let stack = if as_is {
        Stack::open_as_is(settings)?
    } else {
        Stack::open(settings)?
    };
    stack.require_all()?;
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_modules_from_components() {
        assert_eq!(input_kind(b"\0asm\x01\0\0\0"), InputKind::Module);
        assert_eq!(input_kind(b"\0asm\x0d\0\x01\0"), InputKind::Component);
        assert_eq!(input_kind(b"(module)"), InputKind::Module);
        assert_eq!(
            input_kind(b";; a component\n(; block ;)\n  (component)"),
            InputKind::Component
        );
        assert_eq!(input_kind(b"garbage"), InputKind::Module);
    }
}
