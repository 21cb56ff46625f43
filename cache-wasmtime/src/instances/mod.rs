//! [`InstanceCache`]: a fresh instance for every call, from cached pre-instantiations.
//!
//! `prepare.rs` holds what differs between modules and components, `linker.rs` the linker's
//! identity. Lookups, single-flight and the bounded in-process tier are warmcache-core's
//! [`Cache`], the same front as the artifact caches'; this file is only the adapter.

mod linker;
mod prepare;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use warmcache_core::{
    BoxError, Cache, CacheKey, Codec, ComputeError, Entry, Exec, Failure, Produced, Stats,
};
use wasmtime::component::Component;
use wasmtime::{AsContextMut, Engine, Module};

use crate::cache::{Code, WasmCache, compute_error};
use crate::error::{Error, Result};
use crate::input::{Opened, Wasm};
use crate::key::ContentHash;

pub use linker::NamedLinker;
pub use prepare::Instantiate;

/// Pre-instantiations an [`InstanceCache`] keeps by default.
pub const DEFAULT_PREPARED_CAPACITY: u64 = 64;

/// An [`InstanceCache`] of core modules.
pub type ModuleInstances<T> = InstanceCache<Module, T>;

/// An [`InstanceCache`] of components.
pub type ComponentInstances<T> = InstanceCache<Component, T>;

/// Fresh instances per call, from cached pre-instantiations ([`wasmtime::InstancePre`] and
/// [`wasmtime::component::InstancePre`]) keyed by content and linker.
///
/// * **Never a reused instance.** Every [`instantiate`](Self::instantiate) creates a new
///   instance in the caller's store, so no call sees another's memory, globals or tables.
///   What is shared is only what cannot leak: compiled code and the resolved imports. With an
///   engine from [`PoolConfig`](crate::PoolConfig), memory comes from the pooling allocator
///   and is initialized copy-on-write from the module's image (for modules loaded from a
///   file tier, the mapped file itself), so a fresh instance costs microseconds.
/// * **Keys**: the artifact's key (wasmtime version, host, engine settings, content; see
///   [`artifact_key`](crate::artifact_key)) plus the [`NamedLinker`]'s name and version. A
///   different linker identity is a different entry.
/// * **Bounded**: at most the given number of pre-instantiations (default
///   [`DEFAULT_PREPARED_CAPACITY`]), evicting the least valuable by recency and frequency (the
///   same policy as every in-process tier of warmcache). An evicted one costs a rebuild from
///   the artifact cache, not a compile. Live instances are bounded by the engine: with the
///   pooling allocator an instance holds a slot until its store drops, and a request beyond
///   the pool's limits fails with [`Error::Instantiate`] naming the limit.
/// * **One build per key**: concurrent first requests for one key build one pre-instantiation
///   (and compile at most once, through the artifact cache); the others wait and share it.
/// * **Engines**: a pre-instantiation belongs to the linker's engine. Stores must belong to
///   it too (wasmtime refuses others, reported as [`Error::Instantiate`]).
///
/// # Example
///
/// ```
/// use warmcache_wasmtime::{ModuleCache, ModuleInstances, NamedLinker};
///
/// let engine = wasmtime::Engine::default();
/// let instances = ModuleInstances::<()>::new(ModuleCache::builder().build());
/// let linker = NamedLinker::new(wasmtime::Linker::new(&engine), "no-imports", 1);
/// let wasm = br#"(module (global $n (mut i32) (i32.const 0))
///     (func (export "bump") (result i32)
///         (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n)))"#;
///
/// for _ in 0..3 {
///     let mut store = wasmtime::Store::new(&engine, ());
///     let instance = instances.instantiate(&mut store, &linker, wasm)?;
///     let bump = instance.get_typed_func::<(), i32>(&mut store, "bump")?;
///     // A fresh instance each time: the global starts at 0 again.
///     assert_eq!(bump.call(&mut store, ())?, 1);
/// }
/// let stats = instances.stats();
/// assert_eq!((stats.computes, stats.live_hits, instances.instantiations()), (1, 2, 3));
/// assert_eq!(instances.artifacts().stats().computes, 1);
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub struct InstanceCache<A: Instantiate<T>, T: 'static> {
    artifacts: Arc<WasmCache<A>>,
    prepared: Cache<A::Pre, PreCodec<A, T>>,
    instantiations: AtomicU64,
}

impl<A: Instantiate<T>, T: 'static> std::fmt::Debug for InstanceCache<A, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceCache")
            .field("artifacts", &self.artifacts)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<A: Instantiate<T>, T: 'static> InstanceCache<A, T> {
    /// A cache over `artifacts` keeping [`DEFAULT_PREPARED_CAPACITY`] pre-instantiations.
    pub fn new(artifacts: impl Into<Arc<WasmCache<A>>>) -> Self {
        Self::with_capacity(artifacts, DEFAULT_PREPARED_CAPACITY)
    }

    /// A cache over `artifacts` keeping at most `count` pre-instantiations; 0 keeps none (each
    /// request builds one from the artifact cache, which still compiles only once).
    pub fn with_capacity(artifacts: impl Into<Arc<WasmCache<A>>>, count: u64) -> Self {
        Self {
            artifacts: artifacts.into(),
            prepared: Cache::builder(
                &format!("wasmtime-{}-pre", A::KIND.namespace()),
                PreCodec(PhantomData),
            )
            .live_capacity(count)
            .build(),
            instantiations: AtomicU64::new(0),
        }
    }

    /// The artifact cache the pre-instantiations are built from.
    pub fn artifacts(&self) -> &WasmCache<A> {
        &self.artifacts
    }

    /// The key of the wasm with content hash `content` pre-instantiated with `linker`.
    pub fn key_for(&self, linker: &NamedLinker<A::Linker>, content: &ContentHash) -> CacheKey {
        self.key(linker, content, &[])
    }

    fn key(
        &self,
        linker: &NamedLinker<A::Linker>,
        content: &ContentHash,
        extras: &[u8],
    ) -> CacheKey {
        let engine = A::linker_engine(linker.linker());
        let artifact = self.artifacts.key(engine, content, extras);
        self.prepared
            .key_builder()
            .key(&artifact)
            .str(linker.name())
            .integer(linker.version())
            .finish()
    }

    /// The pre-instantiation of `wasm` with `linker`: kept, or built from the artifact cache
    /// (which loads or compiles it). `wasm` is bytes (binary or text), or any other [`Wasm`].
    ///
    /// # Errors
    ///
    /// [`Error::Link`] when `linker` lacks an import or defines it with another type, and those
    /// of [`WasmCache::get_or_compile`].
    pub fn instance_pre<'a>(
        &self,
        linker: &NamedLinker<A::Linker>,
        wasm: impl Into<Wasm<'a>>,
    ) -> Result<A::Pre> {
        let opened = wasm.into().open()?;
        let engine = A::linker_engine(linker.linker());
        let key = self.key(linker, &opened.content, opened.extras());
        // A hit returns without entering an executor.
        if let Some(pre) = self.prepared.get_live(engine, &key) {
            return Ok(pre);
        }
        futures::executor::block_on(self.prepare(linker, opened, Exec::Inline, Code::Any))
    }

    /// [`instance_pre`](Self::instance_pre) for async callers: under a Tokio runtime, compiling
    /// and loading run on its blocking pool.
    ///
    /// # Errors
    ///
    /// As for [`instance_pre`](Self::instance_pre).
    pub async fn instance_pre_async<'a>(
        &self,
        linker: &NamedLinker<A::Linker>,
        wasm: impl Into<Wasm<'a>>,
    ) -> Result<A::Pre> {
        self.prepare(linker, wasm.into().open()?, Exec::Blocking, Code::Any)
            .await
    }

    /// A fresh instance of `wasm` in `store`, from the kept pre-instantiation.
    ///
    /// # Errors
    ///
    /// Those of [`instance_pre`](Self::instance_pre), and [`Error::Instantiate`] when wasmtime
    /// cannot instantiate it (a store of another engine, a full instance pool, a trapping start
    /// function).
    pub fn instantiate<'a>(
        &self,
        store: impl AsContextMut<Data = T>,
        linker: &NamedLinker<A::Linker>,
        wasm: impl Into<Wasm<'a>>,
    ) -> Result<A::Instance> {
        // The store is the caller's: only code of its engine will do.
        let opened = wasm.into().open()?;
        let key = self.key(linker, &opened.content, opened.extras());
        let pre = match self
            .prepared
            .get_live(A::linker_engine(linker.linker()), &key)
        {
            Some(pre) => pre,
            None => futures::executor::block_on(self.prepare(
                linker,
                opened,
                Exec::Inline,
                Code::Optimized,
            ))?,
        };
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        A::instantiate(&pre, store).map_err(Error::instantiate)
    }

    /// [`instantiate`](Self::instantiate) for stores of an engine with async support
    /// ([`wasmtime::Config::async_support`]).
    ///
    /// # Errors
    ///
    /// As for [`instantiate`](Self::instantiate).
    pub async fn instantiate_async<'a>(
        &self,
        store: impl AsContextMut<Data = T> + Send,
        linker: &NamedLinker<A::Linker>,
        wasm: impl Into<Wasm<'a>>,
    ) -> Result<A::Instance>
    where
        T: Send,
    {
        let opened = wasm.into().open()?;
        let pre = self
            .prepare(linker, opened, Exec::Blocking, Code::Optimized)
            .await?;
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        A::instantiate_async(&pre, store)
            .await
            .map_err(Error::instantiate)
    }

    /// Drops every kept pre-instantiation (the artifact cache keeps its artifacts).
    pub fn clear(&self) {
        self.prepared.clear_live();
    }

    /// The counters of kept pre-instantiations, in warmcache-core's vocabulary: `live_hits`
    /// are requests answered by a kept one, `computes` the ones built (including failed ones),
    /// `compute_errors` the failed builds (a missing import, a compile error), `live_entries`
    /// the ones kept now. It has no storage tiers.
    pub fn stats(&self) -> Stats {
        self.prepared.stats()
    }

    /// Instances created by [`instantiate`](Self::instantiate) and
    /// [`instantiate_async`](Self::instantiate_async), successful or not.
    pub fn instantiations(&self) -> u64 {
        self.instantiations.load(Ordering::Relaxed)
    }

    /// The one path behind every entry point: the core cache, building from the artifact cache.
    async fn prepare(
        &self,
        linker: &NamedLinker<A::Linker>,
        opened: Opened<'_>,
        exec: Exec,
        code: Code,
    ) -> Result<A::Pre> {
        opened
            .run(|opened| self.prepare_once(linker, opened, exec, code))
            .await
    }

    /// Builds (or finds) the pre-instantiation. One of baseline code, built with the linker's
    /// baseline twin, belongs to another engine than the key's, so the kept ones never hand it
    /// out: each request builds its own until the optimized artifact is there.
    async fn prepare_once(
        &self,
        linker: &NamedLinker<A::Linker>,
        opened: Opened<'_>,
        exec: Exec,
        code: Code,
    ) -> Result<A::Pre> {
        let content = opened.content;
        let key = self.key(linker, &content, opened.extras());
        let engine = A::linker_engine(linker.linker());
        let code = match linker.baseline() {
            Some(_) => code,
            None => Code::Optimized,
        };
        let produce = || async move {
            let artifact = self
                .artifacts
                .obtain_one(engine, opened, exec, code)
                .await
                .map_err(|e| match e.is_callers_input() {
                    true => Failure::Input(e),
                    false => Failure::Compute(ComputeError::failed(key, e)),
                })?;
            let for_artifact = match linker.baseline() {
                Some(baseline) if !Engine::same(artifact.engine(), engine) => baseline,
                _ => linker.linker(),
            };
            let pre = A::prepare(for_artifact, &artifact).map_err(|e| {
                Failure::Compute(ComputeError::failed(
                    key,
                    Error::Link {
                        kind: A::KIND,
                        content,
                        linker: linker.to_string(),
                        source: Arc::new(e),
                    },
                ))
            })?;
            Ok(Produced::new(pre, None))
        };
        match self
            .prepared
            .get_or_produce(engine, key, exec, produce)
            .await
        {
            Ok(pre) => Ok(pre),
            Err(Failure::Input(e)) => Err(e),
            Err(Failure::Compute(e)) => Err(compute_error::<A>(content, &e)),
        }
    }
}

/// The core cache's view of pre-instantiations: kept in memory only (the cache has no tiers,
/// so nothing is ever encoded), and handed only to callers of their own engine.
struct PreCodec<A, T>(PhantomData<fn() -> (A, T)>);

impl<A, T> Clone for PreCodec<A, T> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<A: Instantiate<T>, T: 'static> Codec<A::Pre> for PreCodec<A, T> {
    type Caller = Engine;

    fn kind(&self) -> u32 {
        u32::from_be_bytes(*b"pre1")
    }

    fn encode(&self, _value: &A::Pre) -> std::result::Result<bytes::Bytes, BoxError> {
        Err("pre-instantiations are kept in memory only".into())
    }

    fn decode(&self, _caller: &Engine, _entry: &Entry) -> std::result::Result<A::Pre, BoxError> {
        Err("pre-instantiations are kept in memory only".into())
    }

    fn accepts(&self, caller: &Engine, value: &A::Pre) -> bool {
        Engine::same(A::pre_engine(value), caller)
    }
}
