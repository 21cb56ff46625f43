//! Errors of the wasmtime caches.

use std::sync::Arc;

use crate::key::{ArtifactKind, ContentHash};

/// Why a [`WasmCache`](crate::WasmCache) could not return an artifact.
///
/// Storage failures never appear here: a tier that fails is a miss, counted in
/// [`Stats`](warmcache_core::Stats). Errors are cheap to clone because one compile's error is
/// handed to every caller that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is the other kind of wasm binary (a component where a module was expected, or
    /// the reverse).
    #[error("wasm {content} is a {found}, but a {expected} was expected")]
    WrongKind {
        /// Hash of the input.
        content: ContentHash,
        /// What the cache compiles.
        expected: ArtifactKind,
        /// What the input is.
        found: ArtifactKind,
    },
    /// The input is already a compiled wasmtime artifact, not wasm.
    #[error(
        "input {content} is a precompiled wasmtime artifact, not wasm; load it with \
         `deserialize` instead of compiling it"
    )]
    Precompiled {
        /// Hash of the input.
        content: ContentHash,
    },
    /// wasmtime could not compile the input: it is not valid wasm, uses a feature the engine
    /// disables, or the engine has no compiler.
    #[error("compiling {kind} {content} failed: {source:#}")]
    Compile {
        /// What was compiled.
        kind: ArtifactKind,
        /// Hash of the input.
        content: ContentHash,
        /// wasmtime's error.
        source: Arc<wasmtime::Error>,
    },
    /// A freshly compiled artifact could not be loaded into the engine (for example, it was
    /// compiled for another target with [`wasmtime::Config::target`]; use
    /// [`WasmCache::precompile`](crate::WasmCache::precompile) for cross-compilation).
    #[error("loading the freshly compiled {kind} {content} failed: {source:#}")]
    Load {
        /// What was loaded.
        kind: ArtifactKind,
        /// Hash of the input.
        content: ContentHash,
        /// wasmtime's error.
        source: Arc<wasmtime::Error>,
    },
    /// The bytes supplied on a miss do not hash to the content hash the caller gave.
    #[error("the wasm supplied for content hash {expected} hashes to {found}")]
    HashMismatch {
        /// The hash the caller supplied.
        expected: ContentHash,
        /// The hash of the bytes it supplied.
        found: ContentHash,
    },
    /// The caller's function that supplies or prepares the wasm failed.
    #[error("preparing the wasm for {content} failed: {source}")]
    Source {
        /// Hash of the original input.
        content: ContentHash,
        /// The caller's error.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// An input file could not be read.
    #[error("reading the wasm file {path} failed: {source}")]
    Input {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// The linker cannot satisfy the artifact's imports: one is missing or has another type.
    #[error(
        "linking {kind} {content} with linker {linker} failed: {source:#}; define the missing \
         imports in that linker"
    )]
    Link {
        /// What was linked.
        kind: ArtifactKind,
        /// Hash of the input.
        content: ContentHash,
        /// The linker's name and version.
        linker: String,
        /// wasmtime's error.
        source: Arc<wasmtime::Error>,
    },
    /// wasmtime could not instantiate a pre-instantiated artifact: the store belongs to another
    /// engine, the pooling allocator has no free slot (raise its limits or drop stores sooner),
    /// or the start function trapped.
    #[error("instantiating failed: {source:#}")]
    Instantiate {
        /// wasmtime's error.
        source: Arc<wasmtime::Error>,
    },
    /// [`PoolConfig::module`](crate::PoolConfig::module) could not read what a binary needs.
    #[error("inspecting wasm {content} for the instance pool failed: {reason}")]
    Inspect {
        /// Hash of the input.
        content: ContentHash,
        /// Why.
        reason: String,
    },
    /// wasmtime refused an engine configuration.
    #[error("creating the engine failed: {source:#}")]
    Engine {
        /// wasmtime's error.
        source: Arc<wasmtime::Error>,
    },
    /// Compilation panicked. Nothing was cached; the next request compiles again.
    #[error("compiling {kind} {content} panicked")]
    Panicked {
        /// What was compiled.
        kind: ArtifactKind,
        /// Hash of the input.
        content: ContentHash,
    },
    /// Not compiled: the fleet's signed tiers have no artifact for it, and this cache is set
    /// never to compile what they lack
    /// ([`OnSharedMiss::Fail`](warmcache_core::OnSharedMiss::Fail)).
    #[error("{kind} {content} was not compiled: {source}")]
    NotInFleet {
        /// What was asked for.
        kind: ArtifactKind,
        /// Hash of the input.
        content: ContentHash,
        /// Which key and which tiers lacked it.
        source: warmcache_core::ComputeError,
    },
    /// The compile worker ([`Isolation`](crate::Isolation)) went over a limit and was stopped;
    /// this process is unharmed.
    #[error("compiling {kind} {content} was stopped: it went over {limit}")]
    OverLimit {
        /// What was compiled.
        kind: ArtifactKind,
        /// Hash of the input.
        content: ContentHash,
        /// The limit it went over.
        limit: Limit,
    },
    /// The compile worker could not be run, or ended without an artifact or an error message
    /// (it crashed or was killed by something else).
    #[error("compiling {kind} {content} in a worker failed: {message}")]
    Worker {
        /// What was compiled.
        kind: ArtifactKind,
        /// Hash of the input.
        content: ContentHash,
        /// What happened.
        message: String,
    },
    /// Not compiled: compiling it failed a short while ago, in this process or one sharing a
    /// tier, and the failure is remembered
    /// ([`WasmCacheBuilder::remember_failures`](crate::WasmCacheBuilder::remember_failures)).
    /// Clearing the tiers, or another configuration (another key), compiles it again.
    #[error("{message} (remembered: it failed {age:.0?} ago, and was not compiled again)")]
    Remembered {
        /// What was asked for.
        kind: ArtifactKind,
        /// Hash of the input.
        content: ContentHash,
        /// The failure's message, as the compile reported it.
        message: String,
        /// How long ago the compile failed.
        age: std::time::Duration,
    },
}

/// A limit of the compile worker ([`Isolation`](crate::Isolation)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Wall time ([`Isolation::timeout`](crate::Isolation::timeout)).
    WallTime(std::time::Duration),
    /// CPU time over all its threads (the wall-time limit on every core).
    CpuTime(std::time::Duration),
    /// Address space, in bytes ([`Isolation::memory`](crate::Isolation::memory)).
    Memory(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::WallTime(d) => write!(f, "its wall-time limit of {d:?}"),
            Limit::CpuTime(d) => write!(f, "its CPU-time limit of {d:?}"),
            Limit::Memory(bytes) => write!(
                f,
                "its memory limit of {} of address space (or crashed under it)",
                human(*bytes)
            ),
        }
    }
}

/// `bytes` in the largest binary unit that divides it.
fn human(bytes: u64) -> String {
    let units = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match units
        .iter()
        .find(|(size, _)| bytes >= *size && bytes.is_multiple_of(*size))
    {
        Some((size, unit)) => format!("{} {unit}", bytes / size),
        None => format!("{bytes} bytes"),
    }
}

impl Error {
    pub(crate) fn instantiate(source: wasmtime::Error) -> Self {
        Error::Instantiate {
            source: Arc::new(source),
        }
    }

    /// Whether this is about the caller's own input (not shared with callers waiting on it).
    pub(crate) fn is_callers_input(&self) -> bool {
        matches!(
            self,
            Error::WrongKind { .. }
                | Error::Precompiled { .. }
                | Error::HashMismatch { .. }
                | Error::Source { .. }
                | Error::Input { .. }
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
