//! [`InstanceCache`]: a fresh instance for every call, from cached pre-instantiations.
//!
//! `prepare.rs` holds what differs between modules and components, `linker.rs` the linker's
//! identity. Lookups, single-flight and the bounded in-process tier are warmcache-core's
//! [`Cache`], the same front as the artifact caches'; this file is only the adapter.

mod linker;
mod prepare;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use warmcache_core::{
    BoxError, Cache, CacheKey, Codec, ComputeError, Entry, Exec, Failure, Produced,
};
use wasmtime::component::Component;
use wasmtime::{AsContextMut, Engine, Module};

use crate::cache::{WasmCache, checked_source, compute_error};
use crate::error::{Error, Result};
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
/// assert_eq!((stats.builds, stats.hits, stats.instantiations), (1, 2, 3));
/// assert_eq!(instances.artifacts().stats().compiles, 1);
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

/// A snapshot of an [`InstanceCache`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceStats {
    /// Requests answered by a kept pre-instantiation.
    pub hits: u64,
    /// Pre-instantiations built (the artifact from the artifact cache, imports resolved),
    /// including failed ones.
    pub builds: u64,
    /// Builds that failed (a missing import, a compile error).
    pub build_errors: u64,
    /// Requests that waited for another caller's build of the same key.
    pub waits: u64,
    /// Pre-instantiations kept now.
    pub entries: u64,
    /// Instances created by [`instantiate`](InstanceCache::instantiate) and
    /// [`instantiate_async`](InstanceCache::instantiate_async), successful or not.
    pub instantiations: u64,
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
    pub fn key_for_hash(&self, linker: &NamedLinker<A::Linker>, content: &ContentHash) -> CacheKey {
        let engine = A::linker_engine(linker.linker());
        let artifact = self.artifacts.key_for_hash(engine, content);
        self.prepared
            .key_builder()
            .key(&artifact)
            .str(linker.name())
            .integer(linker.version())
            .finish()
    }

    /// The pre-instantiation of `wasm` (binary or text) with `linker`: kept, or built from the
    /// artifact cache (which loads or compiles it). Hashes `wasm` on every call; callers that
    /// know the hash use [`instance_pre_hashed`](Self::instance_pre_hashed).
    ///
    /// # Errors
    ///
    /// [`Error::Link`] when `linker` lacks an import or defines it with another type, and those
    /// of [`WasmCache::get_or_compile`].
    pub fn instance_pre(&self, linker: &NamedLinker<A::Linker>, wasm: &[u8]) -> Result<A::Pre> {
        let content = ContentHash::of(wasm);
        self.prepare_blocking(linker, content, || {
            std::future::ready(Ok(Cow::Borrowed(wasm)))
        })
    }

    /// [`instance_pre`](Self::instance_pre) for a caller that knows the wasm's content hash:
    /// a hit neither hashes nor loads the wasm; `load` runs only when the artifact must be
    /// compiled, and its bytes must hash to `content`.
    ///
    /// # Errors
    ///
    /// Those of [`instance_pre`](Self::instance_pre) and
    /// [`WasmCache::get_or_compile_hashed`].
    pub fn instance_pre_hashed<B, E>(
        &self,
        linker: &NamedLinker<A::Linker>,
        content: ContentHash,
        load: impl FnOnce() -> std::result::Result<B, E>,
    ) -> Result<A::Pre>
    where
        B: AsRef<[u8]>,
        E: Into<BoxError>,
    {
        self.prepare_blocking(linker, content, move || {
            std::future::ready(checked_source(content, load()).map_err(Failure::Input))
        })
    }

    /// [`instance_pre`](Self::instance_pre) for a wasm file, as
    /// [`WasmCache::get_or_compile_file`] reads it: with a `memo`, an unchanged file is neither
    /// read nor hashed on a hit.
    ///
    /// # Errors
    ///
    /// [`Error::Input`] when the file cannot be read, and those of
    /// [`instance_pre`](Self::instance_pre).
    pub fn instance_pre_file(
        &self,
        linker: &NamedLinker<A::Linker>,
        path: &std::path::Path,
        memo: Option<&crate::InputMemo>,
    ) -> Result<A::Pre> {
        crate::memo::through_file(path, memo, |hash, input| {
            self.instance_pre_hashed(linker, hash, || input.into_bytes())
        })
    }

    /// [`instance_pre`](Self::instance_pre) for async callers: under a Tokio runtime, compiling
    /// and loading run on its blocking pool.
    ///
    /// # Errors
    ///
    /// As for [`instance_pre`](Self::instance_pre).
    pub async fn instance_pre_async(
        &self,
        linker: &NamedLinker<A::Linker>,
        wasm: &[u8],
    ) -> Result<A::Pre> {
        let content = ContentHash::of(wasm);
        let key = self.key_for_hash(linker, &content);
        let source = || std::future::ready(Ok(Cow::Borrowed(wasm)));
        self.prepare_keyed(linker, key, content, source, Exec::Blocking)
            .await
    }

    /// [`instance_pre_hashed`](Self::instance_pre_hashed) for async callers.
    ///
    /// # Errors
    ///
    /// As for [`instance_pre_hashed`](Self::instance_pre_hashed).
    pub async fn instance_pre_hashed_async<B, E, F>(
        &self,
        linker: &NamedLinker<A::Linker>,
        content: ContentHash,
        load: impl FnOnce() -> F,
    ) -> Result<A::Pre>
    where
        B: AsRef<[u8]>,
        E: Into<BoxError>,
        F: std::future::Future<Output = std::result::Result<B, E>>,
    {
        let key = self.key_for_hash(linker, &content);
        let source =
            move || async move { checked_source(content, load().await).map_err(Failure::Input) };
        self.prepare_keyed(linker, key, content, source, Exec::Blocking)
            .await
    }

    /// A fresh instance of `wasm` in `store`, from the kept pre-instantiation.
    ///
    /// # Errors
    ///
    /// Those of [`instance_pre`](Self::instance_pre), and [`Error::Instantiate`] when wasmtime
    /// cannot instantiate it (a store of another engine, a full instance pool, a trapping start
    /// function).
    pub fn instantiate(
        &self,
        store: impl AsContextMut<Data = T>,
        linker: &NamedLinker<A::Linker>,
        wasm: &[u8],
    ) -> Result<A::Instance> {
        let pre = self.instance_pre(linker, wasm)?;
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        A::instantiate(&pre, store).map_err(Error::instantiate)
    }

    /// [`instantiate`](Self::instantiate) for stores of an engine with async support
    /// ([`wasmtime::Config::async_support`]).
    ///
    /// # Errors
    ///
    /// As for [`instantiate`](Self::instantiate).
    pub async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = T> + Send,
        linker: &NamedLinker<A::Linker>,
        wasm: &[u8],
    ) -> Result<A::Instance>
    where
        T: Send,
    {
        let pre = self.instance_pre_async(linker, wasm).await?;
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        A::instantiate_async(&pre, store)
            .await
            .map_err(Error::instantiate)
    }

    /// Drops every kept pre-instantiation (the artifact cache keeps its artifacts).
    pub fn clear(&self) {
        self.prepared.clear_live();
    }

    /// The counters.
    pub fn stats(&self) -> InstanceStats {
        let stats = self.prepared.stats();
        InstanceStats {
            hits: stats.live_hits,
            builds: stats.computes,
            build_errors: stats.compute_errors + stats.compute_panics,
            waits: stats.waits,
            entries: stats.live_entries,
            instantiations: self.instantiations.load(Ordering::Relaxed),
        }
    }

    /// [`prepare_keyed`](Self::prepare_keyed) for the synchronous entry points: a hit returns without
    /// entering an executor.
    fn prepare_blocking<'w, S, F>(
        &self,
        linker: &NamedLinker<A::Linker>,
        content: ContentHash,
        source: S,
    ) -> Result<A::Pre>
    where
        S: FnOnce() -> F,
        F: std::future::Future<Output = std::result::Result<Cow<'w, [u8]>, Failure<Error>>>,
    {
        let engine = A::linker_engine(linker.linker());
        let key = self.key_for_hash(linker, &content);
        if let Some(pre) = self.prepared.get_live(engine, &key) {
            return Ok(pre);
        }
        futures::executor::block_on(self.prepare_keyed(linker, key, content, source, Exec::Inline))
    }

    /// The one path behind every entry point: the core cache, building from the artifact cache.
    async fn prepare_keyed<'w, S, F>(
        &self,
        linker: &NamedLinker<A::Linker>,
        key: CacheKey,
        content: ContentHash,
        source: S,
        exec: Exec,
    ) -> Result<A::Pre>
    where
        S: FnOnce() -> F,
        F: std::future::Future<Output = std::result::Result<Cow<'w, [u8]>, Failure<Error>>>,
    {
        let engine = A::linker_engine(linker.linker());
        let produce = || async move {
            let artifact_key = self.artifacts.key_for_hash(engine, &content);
            let artifact = self
                .artifacts
                .obtain(engine, artifact_key, content, source, exec)
                .await
                .map_err(|e| match e.is_callers_input() {
                    true => Failure::Input(e),
                    false => Failure::Compute(ComputeError::failed(key, e)),
                })?;
            let pre = A::prepare(linker.linker(), &artifact).map_err(|e| {
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
            Ok(Produced {
                value: pre,
                payload: None,
            })
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
