//! Module and component caches for wasmtime on warmcache tiers.
//!
//! A warm start costs a verified read plus `deserialize` instead of a Cranelift compile:
//!
//! * [`ModuleCache`] and [`ComponentCache`] ([`WasmCache`]) return compiled artifacts for an
//!   engine and wasm bytes, from an in-process tier, from storage tiers (memory, redb, RocksDB,
//!   files, S3 through `warmcache-core`'s [`Tiered`](warmcache_core::Tiered)), or compiled once
//!   however many threads ask.
//! * Keys ([`artifact_key`]) cover the wasmtime version, the host, the engine's compatibility
//!   hash and the content, so changing any setting that changes code never reuses stale code.
//! * Nothing reaches wasmtime's `deserialize` before its envelope verified; from a file tier the
//!   artifact is verified through a mapping and loaded with `Module::deserialize_open_file`.
//! * [`InstanceCache`] ([`ModuleInstances`], [`ComponentInstances`]) hands out a fresh instance
//!   per call from cached pre-instantiations keyed by content and a [`NamedLinker`], and
//!   [`PoolConfig`] configures an engine (pooling allocator, copy-on-write memory images) for
//!   which that costs microseconds.
//! * [`IncrementalCache`] stores Cranelift's per-function incremental compilation cache in any
//!   tier stack.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use warmcache_core::{Tier, Tiered};
//! use warmcache_fs::FsBackend;
//! use warmcache_wasmtime::ModuleCache;
//!
//! let dir = tempfile::tempdir()?;
//! let files = Arc::new(FsBackend::builder(dir.path()).open()?);
//! let cache = ModuleCache::new(Tiered::builder().tier(Tier::new(files)).build());
//!
//! let engine = wasmtime::Engine::default();
//! let wasm = br#"(module (func (export "answer") (result i32) i32.const 42))"#;
//!
//! let module = cache.get_or_compile(&engine, wasm)?; // compiled, stored as a file
//! cache.clear_live();
//! let module = cache.get_or_compile(&engine, wasm)?; // verified, mapped, loaded
//! let stats = cache.stats();
//! assert_eq!((stats.computes, stats.tier_hits, stats.file_loads), (1, 1, 1));
//!
//! let mut store = wasmtime::Store::new(&engine, ());
//! let instance = wasmtime::Instance::new(&mut store, &module, &[])?;
//! let answer = instance.get_typed_func::<(), i32>(&mut store, "answer")?;
//! assert_eq!(answer.call(&mut store, ())?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod artifact;
mod baseline;
mod cache;
mod error;
mod explain;
mod incremental;
mod input;
mod instances;
mod isolate;
mod key;
mod level;
mod memo;
mod pool;
mod target;

pub use artifact::Artifact;
pub use baseline::{Baseline, BaselineStats};
pub use cache::{
    ComponentCache, DEFAULT_LIVE_CAPACITY, ModuleCache, Precompiled, WasmCache, WasmCacheBuilder,
};
pub use error::{Error, Limit, Result};
pub use explain::{Difference, Explanation, Field, Found};
pub use incremental::IncrementalCache;
pub use input::Wasm;
pub use instances::{
    ComponentInstances, DEFAULT_PREPARED_CAPACITY, InstanceCache, Instantiate, ModuleInstances,
    NamedLinker,
};
pub use isolate::Isolation;
pub use key::{ArtifactKind, ContentHash, EngineKey, WASMTIME_VERSION, artifact_key, host};
pub use level::{Answer, CpuLevel, CpuLevels};
pub use memo::{Input, InputMemo};
pub use pool::{DEFAULT_LIVE_INSTANCES, DEFAULT_MEMORY_LIMIT, DEFAULT_TABLE_LIMIT, PoolConfig};
pub use target::{CompileTarget, TargetError};
