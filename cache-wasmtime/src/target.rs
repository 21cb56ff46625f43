//! [`CompileTarget`]: a compilation target and Cranelift settings stated explicitly, so that
//! a build host can compile for a fleet (another architecture, or a CPU baseline below its own)
//! and every node configured the same way derives the same keys, with or without a compiler.

// Cranelift settings are set through wasmtime's unsafe `cranelift_flag_set`; `setting` passes
// its contract on to the caller.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use warmcache_core::Namespace;
use wasmtime::{Config, Engine};

use crate::key::{EngineKey, WASMTIME_VERSION};

/// Why a [`CompileTarget`] could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// This host's CPU lacks what a [`CpuLevel`](crate::CpuLevel) requires: a node never
    /// loads code for a level its CPU cannot run.
    #[error("this host cannot run CPU level {level}: it lacks {missing}")]
    Level {
        /// The level's name.
        level: String,
        /// What the host lacks: Cranelift's names of the CPU features, or the architecture.
        missing: String,
    },
    /// The target triple is not one wasmtime knows.
    #[error("unknown compilation target {triple:?}: {message}")]
    Triple {
        /// The triple as given.
        triple: String,
        /// wasmtime's message.
        message: String,
    },
    /// wasmtime refused the configuration (an unknown Cranelift setting or value, a target
    /// this build cannot compile for).
    #[error("the engine configuration for target {target} is invalid: {message}")]
    Engine {
        /// The target, as shown by [`CompileTarget`]'s `Display`.
        target: String,
        /// wasmtime's message.
        message: String,
    },
}

/// A compilation target (triple) and Cranelift settings, stated instead of inferred from the
/// host.
///
/// An engine configured with [`compiling_config`](Self::compiling_config) compiles code for
/// exactly this target and these settings, with no CPU feature inferred from the build host,
/// so a CI machine can fill a bucket for an aarch64 fleet, or for an x86-64 baseline without
/// the build host's AVX-512. Its [`engine_key`](Self::engine_key) depends only on the target,
/// the settings and the base configuration's compiler-independent parts (wasm features,
/// tunables), so a node built with [`loading_config`](Self::loading_config) (no compiler at
/// all) derives the same key and loads those entries.
///
/// Configure every Cranelift option through the settings (for example `opt_level`), never on
/// the base [`Config`] directly: an engine without a compiler cannot see those, so they could
/// not be part of the key.
///
/// ```
/// use warmcache_wasmtime::CompileTarget;
///
/// let target = CompileTarget::new("aarch64-unknown-linux-gnu")?;
/// // SAFETY: a standard optimisation level.
/// let target = unsafe { target.setting("opt_level", "speed") };
/// let base = wasmtime::Config::new();
/// let compiling = wasmtime::Engine::new(&target.compiling_config(&base)?)?;
/// let key = target.engine_key(&base)?;
/// // A node without a compiler, configured the same way, derives the same key.
/// assert_eq!(key, target.engine_key(&target.loading_config(&base)?)?);
/// // The artifact is compiled for aarch64, whatever this host is.
/// let artifact = compiling.precompile_module(b"(module)")?;
/// assert!(!artifact.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompileTarget {
    triple: String,
    settings: BTreeMap<String, String>,
}

impl CompileTarget {
    /// The target `triple` (such as `x86_64-unknown-linux-gnu` or `aarch64-apple-darwin`),
    /// with no Cranelift settings yet: the target's baseline CPU.
    ///
    /// # Errors
    ///
    /// [`TargetError::Triple`] when wasmtime does not know the triple.
    pub fn new(triple: &str) -> Result<Self, TargetError> {
        let mut probe = Config::new();
        probe.target(triple).map_err(|e| TargetError::Triple {
            triple: triple.to_owned(),
            message: format!("{e:#}"),
        })?;
        Ok(Self {
            triple: triple.to_owned(),
            settings: BTreeMap::new(),
        })
    }

    /// A triple known to be valid (this host's, or a tier-1 Linux triple), unchecked.
    pub(crate) fn known(triple: &str) -> Self {
        Self {
            triple: triple.to_owned(),
            settings: BTreeMap::new(),
        }
    }

    /// This host's triple, as wasmtime names it.
    pub fn host_triple() -> String {
        target_lexicon::Triple::host().to_string()
    }

    /// Adds (or replaces) the Cranelift setting `name` = `value`, as `wasmtime compile
    /// --cranelift-set` does: CPU features such as `has_avx2` = `true`, or shared settings
    /// such as `opt_level` = `speed`. Unknown names and values are refused when an engine is
    /// built from [`compiling_config`](Self::compiling_config).
    ///
    /// # Safety
    ///
    /// As for [`Config::cranelift_flag_set`]: a wrong setting can make Cranelift generate code
    /// that breaks wasmtime's invariants. wasmtime checks on load that the host has the CPU
    /// features an artifact was compiled with; other settings are the caller's responsibility.
    pub unsafe fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The triple.
    pub fn triple(&self) -> &str {
        &self.triple
    }

    /// The settings, by name.
    pub fn settings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether code for this target can run on this host (same triple; the settings may still
    /// ask for CPU features the host lacks, which wasmtime refuses when loading).
    pub fn runs_here(&self) -> bool {
        self.triple == Self::host_triple()
    }

    /// `base` with this target and these settings: the configuration of an engine that
    /// compiles for the fleet.
    ///
    /// # Errors
    ///
    /// [`TargetError`] when the triple or a setting is refused.
    pub fn compiling_config(&self, base: &Config) -> Result<Config, TargetError> {
        let mut config = base.clone();
        config.enable_compiler(true);
        config
            .target(&self.triple)
            .map_err(|e| self.engine_error(&e))?;
        for (name, value) in &self.settings {
            // SAFETY: `setting`, the only way in, is unsafe with the same contract.
            unsafe {
                config.cranelift_flag_set(name, value);
            }
        }
        Engine::new(&config).map_err(|e| self.engine_error(&e))?;
        Ok(config)
    }

    /// `base` with this target and no compiler: the configuration of a node that only loads
    /// entries compiled elsewhere.
    ///
    /// # Errors
    ///
    /// [`TargetError`] when the triple is refused.
    pub fn loading_config(&self, base: &Config) -> Result<Config, TargetError> {
        let mut config = base.clone();
        config.enable_compiler(false);
        config
            .target(&self.triple)
            .map_err(|e| self.engine_error(&e))?;
        Ok(config)
    }

    /// The engine part of keys for engines built from `base` with this target, the same for
    /// [`compiling_config`](Self::compiling_config) and
    /// [`loading_config`](Self::loading_config) (and for `base` itself): the wasmtime version,
    /// the triple, the settings, and the compatibility hash of a compiler-less engine for the
    /// target (wasm features, tunables such as memory reservation and guard sizes, fuel,
    /// epochs, debug info). Pin it for an engine with
    /// [`WasmCache::pin_engine_key`](crate::WasmCache::pin_engine_key).
    ///
    /// # Errors
    ///
    /// [`TargetError`] when an engine cannot be built for the target from `base`.
    pub fn engine_key(&self, base: &Config) -> Result<EngineKey, TargetError> {
        let config = self.loading_config(base)?;
        let engine = Engine::new(&config).map_err(|e| self.engine_error(&e))?;
        let mut builder = Namespace::new("wasmtime-engine-explicit").builder();
        builder
            .str(WASMTIME_VERSION)
            .str(&self.triple)
            .integer(self.settings.len() as u64);
        for (name, value) in &self.settings {
            builder.str(name).str(value);
        }
        builder.hash(&engine.precompile_compatibility_hash());
        Ok(EngineKey::from_key(builder.finish()))
    }

    fn engine_error(&self, e: &wasmtime::Error) -> TargetError {
        TargetError::Engine {
            target: self.to_string(),
            message: format!("{e:#}"),
        }
    }
}

impl fmt::Display for CompileTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.triple)?;
        for (name, value) in &self.settings {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}
