//! [`WasmCache`]: wasmtime modules and components over warmcache-core's one cache front.
//!
//! Everything about lookups, single-flight and storage is `warmcache_core::Cache`'s; this file
//! says how an artifact is compiled ([`WasmCache`]'s produce step), how a verified entry
//! becomes a loaded artifact ([`ArtifactCodec`]), and which failures are whose.

use std::borrow::Cow;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warmcache_core::backend::maybe_spawn_blocking;
use warmcache_core::{
    BoxError, Cache, CacheKey, CanonicalHasher, Codec, ComputeError, Entry, Exec, Failure,
    Namespace, Produced, Tiered,
};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::artifact::{Artifact, Detected, detect};
use crate::error::{Error, Result};
use crate::key::{ArtifactKind, ContentHash, EngineKey, WASMTIME_VERSION};
use crate::stats::WasmStats;

/// A cache of compiled [`Module`]s.
pub type ModuleCache = WasmCache<Module>;

/// A cache of compiled [`Component`]s.
pub type ComponentCache = WasmCache<Component>;

/// Default number of loaded artifacts kept in the in-process tier.
pub const DEFAULT_LIVE_CAPACITY: u64 = 256;

/// How the in-process tier is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveBound {
    Count(u64),
    Bytes(u64),
}

/// How wasmtime artifacts are stored and loaded: the artifact bytes as `precompile` made them,
/// loaded into the caller's engine. An artifact is handed only to callers of the engine it was
/// loaded into; others load their own copy from the entry.
struct ArtifactCodec<A>(PhantomData<fn() -> A>);

impl<A> Clone for ArtifactCodec<A> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<A: Artifact> Codec<A> for ArtifactCodec<A> {
    type Caller = Engine;

    fn kind(&self) -> u32 {
        A::KIND.envelope_kind()
    }

    fn producer(&self) -> String {
        format!("wasmtime {WASMTIME_VERSION} {}", crate::key::host())
    }

    fn encode(&self, artifact: &A) -> std::result::Result<Bytes, BoxError> {
        Ok(Bytes::from(artifact.serialize()?))
    }

    fn decode(&self, engine: &Engine, entry: &Entry) -> std::result::Result<A, BoxError> {
        // SAFETY (both arms): an `Entry` is either verified by warmcache-core (tag or MAC, key
        // echo, length, this artifact kind), so it holds exactly what `precompile` stored, or
        // it is the payload this cache's own compile just produced. A file entry's file is not
        // modified in place by file-offering backends, so it still holds the verified bytes.
        #[allow(unsafe_code)]
        let loaded = match entry.file() {
            Some(file) => {
                let file = file.try_clone()?;
                unsafe { A::load_file(engine, file, entry.payload()) }
            }
            None => unsafe { A::load(engine, entry.payload()) },
        };
        Ok(loaded?)
    }

    fn accepts(&self, engine: &Engine, artifact: &A) -> bool {
        Engine::same(artifact.engine(), engine)
    }

    fn blocking(&self) -> bool {
        true
    }

    fn prefers_files(&self) -> bool {
        true
    }
}

fn image_size<A: Artifact>(artifact: &A) -> u64 {
    artifact.image_size()
}

/// Builds a [`WasmCache`].
#[derive(Debug)]
pub struct WasmCacheBuilder<A> {
    tiers: Option<Tiered>,
    live: LiveBound,
    _artifact: PhantomData<fn() -> A>,
}

impl<A: Artifact> WasmCacheBuilder<A> {
    /// The storage tiers, fastest first (default: none, so only the in-process tier).
    ///
    /// The in-process tier already holds loaded artifacts, so a memory *byte* tier in front of
    /// the others mostly costs copies; put the file tier first for mapped warm starts.
    pub fn tiers(mut self, tiers: Tiered) -> Self {
        self.tiers = Some(tiers);
        self
    }

    /// Bounds the in-process tier of loaded artifacts to `count` of them (the default, with
    /// [`DEFAULT_LIVE_CAPACITY`]); 0 disables it.
    pub fn live_capacity(mut self, count: u64) -> Self {
        self.live = LiveBound::Count(count);
        self
    }

    /// Bounds the in-process tier by the size of the artifacts' code images instead, in bytes;
    /// 0 disables it. An artifact larger than the bound is not kept.
    pub fn live_bytes(mut self, bytes: u64) -> Self {
        self.live = LiveBound::Bytes(bytes);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> WasmCache<A> {
        let builder = Cache::builder(A::KIND.namespace(), ArtifactCodec::<A>(PhantomData));
        let builder = match self.live {
            LiveBound::Count(count) => builder.live_capacity(count),
            LiveBound::Bytes(bytes) => builder.live_weighted(bytes, image_size::<A>),
        };
        let builder = match self.tiers {
            Some(tiers) => builder.tiers(tiers),
            None => builder,
        };
        WasmCache {
            namespace: Namespace::new(A::KIND.namespace()),
            cache: builder.build(),
            engines: parking_lot::RwLock::new(Vec::new()),
        }
    }
}

/// A cache of compiled wasmtime artifacts ([`ModuleCache`] or [`ComponentCache`]) over a
/// [`Tiered`] stack.
///
/// * **Keys** cover everything that changes compiled code: wasmtime's version, the host, the
///   engine's compatibility hash (target, Cranelift settings, tunables, wasm features, fuel,
///   epochs, debug info), the wasm's content hash and the caller's extras. See
///   [`artifact_key`](crate::artifact_key).
/// * **Loads are verified**: an entry reaches wasmtime's `deserialize` only after its envelope
///   verified (tag or MAC, key echo, length, artifact kind). An entry that verifies but that
///   wasmtime rejects is counted as [`incompatible`](WasmStats::incompatible), recompiled and
///   overwritten.
/// * **File tiers are mapped**: when a tier offers local files (`warmcache-fs`), the entry is
///   verified through a mapping and loaded with `Module::deserialize_open_file`, without
///   reading it into memory.
/// * **One compile per artifact**: concurrent requests for one key run one lookup and at most
///   one compile; the rest wait and share the result, or the compile's error. A request that
///   arrives while the compiled artifact is still being written to storage waits for it too.
///   A failure to load a caller's own input (its loader's error, bytes that do not match the
///   hash, the wrong kind of binary) is that caller's alone.
/// * **Artifacts stay with their engine**: an artifact is handed out only to callers of the
///   engine it was loaded into; a caller on another engine with the same settings loads its
///   own copy from the same verified entry or freshly compiled bytes, never by compiling.
///
/// Failures of storage tiers are never errors: they are misses, counted in
/// [`stats`](Self::stats).
pub struct WasmCache<A: Artifact> {
    namespace: Namespace,
    cache: Cache<A, ArtifactCodec<A>>,
    /// Engine keys of the engines seen so far, so a hit does not hash an engine's settings.
    engines: parking_lot::RwLock<Vec<(wasmtime::EngineWeak, EngineKey)>>,
}

impl<A: Artifact> std::fmt::Debug for WasmCache<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmCache")
            .field("namespace", &self.namespace.name())
            .field("cache", &self.cache)
            .finish()
    }
}

/// What [`WasmCache::precompile`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Precompiled {
    /// The artifact's key.
    pub key: CacheKey,
    /// Whether a verified entry was already stored (nothing was compiled).
    pub already_cached: bool,
    /// Size of the artifact in bytes.
    pub size: u64,
    /// How long compiling took; zero when it was already cached.
    pub compile_time: Duration,
}

type PanicPayload = Box<dyn std::any::Any + Send>;

impl<A: Artifact> WasmCache<A> {
    /// Starts building a cache.
    pub fn builder() -> WasmCacheBuilder<A> {
        WasmCacheBuilder {
            tiers: None,
            live: LiveBound::Count(DEFAULT_LIVE_CAPACITY),
            _artifact: PhantomData,
        }
    }

    /// A cache over `tiers` with the default in-process tier.
    pub fn new(tiers: Tiered) -> Self {
        Self::builder().tiers(tiers).build()
    }

    /// The key `wasm` has under `engine`, without extras.
    pub fn key_for(&self, engine: &Engine, wasm: &[u8]) -> CacheKey {
        self.key(engine, &ContentHash::of(wasm), &[])
    }

    /// The key of the wasm with content hash `content` under `engine`, without extras.
    pub fn key_for_hash(&self, engine: &Engine, content: &ContentHash) -> CacheKey {
        self.key(engine, content, &[])
    }

    /// The storage tiers.
    pub fn tiers(&self) -> &Tiered {
        self.cache.tiers()
    }

    /// Returns the compiled `wasm` (binary or text) for `engine`: from the in-process tier, from
    /// storage, or compiled and stored.
    ///
    /// Blocks the calling thread; usable from any thread. Concurrent calls for the same wasm and
    /// settings compile once. In async code use
    /// [`get_or_compile_async`](Self::get_or_compile_async).
    ///
    /// # Errors
    ///
    /// [`Error::Compile`] when wasmtime cannot compile it (invalid wasm, a disabled feature, an
    /// engine without a compiler), [`Error::WrongKind`] for a component passed to a module cache
    /// or the reverse, [`Error::Precompiled`] for an artifact passed as wasm. Nothing is cached
    /// for a failed compile.
    ///
    /// # Example
    ///
    /// ```
    /// use warmcache_wasmtime::ModuleCache;
    ///
    /// let engine = wasmtime::Engine::default();
    /// let cache = ModuleCache::builder().build(); // add tiers with `.tiers(...)`
    /// let wasm = br#"(module (func (export "answer") (result i32) i32.const 42))"#;
    ///
    /// let module = cache.get_or_compile(&engine, wasm)?;
    /// let again = cache.get_or_compile(&engine, wasm)?; // in-process hit
    /// assert_eq!(cache.stats().compiles, 1);
    /// assert_eq!(cache.stats().live_hits, 1);
    /// # let _ = (module, again);
    /// # Ok::<(), warmcache_wasmtime::Error>(())
    /// ```
    pub fn get_or_compile(&self, engine: &Engine, wasm: &[u8]) -> Result<A> {
        let content = ContentHash::of(wasm);
        let key = self.key(engine, &content, &[]);
        self.obtain_blocking(
            engine,
            key,
            content,
            || std::future::ready(Ok(Cow::Borrowed(wasm))),
            Exec::Inline,
        )
    }

    /// [`get_or_compile`](Self::get_or_compile) for async callers. Under a Tokio runtime,
    /// compiling and loading run on its blocking pool; waiting for another caller's compile
    /// does not block the executor.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), warmcache_wasmtime::Error> {
    /// use warmcache_wasmtime::ModuleCache;
    ///
    /// let engine = wasmtime::Engine::default();
    /// let cache = ModuleCache::builder().build();
    /// let wasm = br#"(module (func (export "answer") (result i32) i32.const 42))"#;
    /// let module = cache.get_or_compile_async(&engine, wasm).await?;
    /// assert!(module.get_export("answer").is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_compile_async(&self, engine: &Engine, wasm: &[u8]) -> Result<A> {
        let content = ContentHash::of(wasm);
        let key = self.key(engine, &content, &[]);
        self.obtain(
            engine,
            key,
            content,
            || std::future::ready(Ok(Cow::Borrowed(wasm))),
            Exec::Blocking,
        )
        .await
    }

    /// Like [`get_or_compile`](Self::get_or_compile) for callers that already know the wasm's
    /// content hash (code stored by hash): a hit costs no hashing, and `load` runs only on a
    /// miss. The bytes `load` returns are hashed and must match `content`
    /// ([`Error::HashMismatch`] otherwise), so a wrong hash cannot store code under another
    /// module's key.
    ///
    /// # Example
    ///
    /// ```
    /// use warmcache_wasmtime::{ContentHash, ModuleCache};
    ///
    /// let wasm = br#"(module (func (export "run")))"#.to_vec();
    /// let hash = ContentHash::of(&wasm); // stored next to the code, computed once
    ///
    /// let engine = wasmtime::Engine::default();
    /// let cache = ModuleCache::builder().build();
    /// let module = cache.get_or_compile_hashed(&engine, hash, || {
    ///     Ok::<_, std::io::Error>(wasm.clone()) // e.g. read from the code store
    /// })?;
    /// let hit = cache.get_or_compile_hashed(&engine, hash, || -> Result<Vec<u8>, std::io::Error> {
    ///     unreachable!("not called on a hit")
    /// })?;
    /// # let _ = (module, hit);
    /// # Ok::<(), warmcache_wasmtime::Error>(())
    /// ```
    pub fn get_or_compile_hashed<B, E>(
        &self,
        engine: &Engine,
        content: ContentHash,
        load: impl FnOnce() -> std::result::Result<B, E>,
    ) -> Result<A>
    where
        B: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = self.key(engine, &content, &[]);
        let source =
            move || std::future::ready(checked_source(content, load()).map_err(Failure::Input));
        self.obtain_blocking(engine, key, content, source, Exec::Inline)
    }

    /// Like [`get_or_compile`](Self::get_or_compile) for a wasm file: with a `memo`, a file whose
    /// identity is unchanged since its hash was remembered is neither read nor hashed on a hit
    /// (see [`InputMemo`](crate::InputMemo)); it is read only to compile it. Without a memo it
    /// is read and hashed.
    ///
    /// A remembered hash that turns out wrong on a miss (the bytes read do not match it) is
    /// forgotten, and the file is hashed afresh.
    ///
    /// # Errors
    ///
    /// [`Error::Input`] when the file cannot be read, and those of
    /// [`get_or_compile`](Self::get_or_compile).
    ///
    /// # Example
    ///
    /// ```
    /// use warmcache_wasmtime::{InputMemo, ModuleCache};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("answer.wat");
    /// std::fs::write(&path, r#"(module (func (export "answer") (result i32) i32.const 42))"#)?;
    /// let memo = InputMemo::open(dir.path().join("inputs"))?;
    ///
    /// let engine = wasmtime::Engine::default();
    /// let cache = ModuleCache::builder().build();
    /// let module = cache.get_or_compile_file(&engine, &path, Some(&memo))?;
    /// assert!(module.get_export("answer").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_or_compile_file(
        &self,
        engine: &Engine,
        path: &std::path::Path,
        memo: Option<&crate::InputMemo>,
    ) -> Result<A> {
        crate::memo::through_file(path, memo, |hash, input| {
            self.get_or_compile_hashed(engine, hash, || input.into_bytes())
        })
    }

    /// [`get_or_compile_hashed`](Self::get_or_compile_hashed) for async callers, with an async
    /// `load`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), warmcache_wasmtime::Error> {
    /// use warmcache_wasmtime::{ContentHash, ModuleCache};
    ///
    /// let wasm = br#"(module (func (export "run")))"#.to_vec();
    /// let hash = ContentHash::of(&wasm);
    /// let engine = wasmtime::Engine::default();
    /// let cache = ModuleCache::builder().build();
    /// let module = cache
    ///     .get_or_compile_hashed_async(&engine, hash, || async { Ok::<_, std::io::Error>(wasm) })
    ///     .await?;
    /// # let _ = module;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_compile_hashed_async<B, E, F>(
        &self,
        engine: &Engine,
        content: ContentHash,
        load: impl FnOnce() -> F,
    ) -> Result<A>
    where
        B: AsRef<[u8]>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: Future<Output = std::result::Result<B, E>>,
    {
        let key = self.key(engine, &content, &[]);
        let source =
            move || async move { checked_source(content, load().await).map_err(Failure::Input) };
        self.obtain(engine, key, content, source, Exec::Blocking)
            .await
    }

    /// Like [`get_or_compile`](Self::get_or_compile) for embedders that transform the wasm before
    /// compiling it (for example patching in a heap-pages setting): `prepare(wasm, extras)`
    /// produces what is compiled, and `extras` is part of the key. `prepare` is a function
    /// pointer, so it cannot capture state that the key does not cover.
    ///
    /// # Example
    ///
    /// ```
    /// use warmcache_wasmtime::ModuleCache;
    ///
    /// fn with_pages(wasm: &[u8], pages: &u32) -> Result<Vec<u8>, std::str::Utf8Error> {
    ///     let text = std::str::from_utf8(wasm)?;
    ///     Ok(text.replace("(memory 1)", &format!("(memory {pages})")).into_bytes())
    /// }
    ///
    /// let engine = wasmtime::Engine::default();
    /// let cache = ModuleCache::builder().build();
    /// let wasm = br#"(module (memory 1) (export "memory" (memory 0)))"#;
    /// cache.get_or_compile_with(&engine, wasm, &16u32, with_pages)?;
    /// cache.get_or_compile_with(&engine, wasm, &32u32, with_pages)?; // another key
    /// assert_eq!(cache.stats().compiles, 2);
    /// # Ok::<(), warmcache_wasmtime::Error>(())
    /// ```
    pub fn get_or_compile_with<X, E>(
        &self,
        engine: &Engine,
        wasm: &[u8],
        extras: &X,
        prepare: fn(&[u8], &X) -> std::result::Result<Vec<u8>, E>,
    ) -> Result<A>
    where
        X: Hash + ?Sized,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let content = ContentHash::of(wasm);
        let mut hasher = CanonicalHasher::new();
        extras.hash(&mut hasher);
        let key = self.key(engine, &content, hasher.digest().as_bytes());
        // `prepare` is a function of the keyed input alone, so its failure is shared like a
        // compile's.
        let source =
            move || {
                std::future::ready(prepare(wasm, extras).map(Cow::Owned).map_err(|e| {
                    Failure::Compute(ComputeError::failed(key, source_error(content, e)))
                }))
            };
        self.obtain_blocking(engine, key, content, source, Exec::Inline)
    }

    /// Compiles `wasm` with `engine` into the storage tiers without loading it, unless a
    /// verified entry is already there. Works for engines configured for another target
    /// ([`wasmtime::Config::target`]), whose artifacts this process cannot load: they are stored
    /// under their own key for hosts of that target.
    ///
    /// # Errors
    ///
    /// As for [`get_or_compile`](Self::get_or_compile).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use warmcache_core::{Tier, Tiered};
    /// use warmcache_memory::MemoryBackend;
    /// use warmcache_wasmtime::ModuleCache;
    ///
    /// let memory = Arc::new(MemoryBackend::with_capacity(64 << 20)?);
    /// let cache = ModuleCache::new(Tiered::builder().tier(Tier::new(memory)).build());
    /// let engine = wasmtime::Engine::default();
    /// let wasm = br#"(module (func (export "run")))"#;
    ///
    /// assert!(!cache.precompile(&engine, wasm)?.already_cached);
    /// assert!(cache.precompile(&engine, wasm)?.already_cached);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn precompile(&self, engine: &Engine, wasm: &[u8]) -> Result<Precompiled> {
        let content = ContentHash::of(wasm);
        let key = self.key(engine, &content, &[]);
        let tiers = self.cache.tiers();
        futures::executor::block_on(async {
            if let Some(found) = tiers.get(&key, A::KIND.envelope_kind()).await {
                return Ok(Precompiled {
                    key,
                    already_cached: true,
                    size: found.payload().len() as u64,
                    compile_time: Duration::ZERO,
                });
            }
            check_kind::<A>(content, wasm)?;
            let compiled = async {
                compile::<A>(engine, content, Cow::Borrowed(wasm), Exec::Inline)
                    .await
                    .map(Bytes::from)
            };
            let (artifact, took) = self.cache.compute_and_store(key, compiled).await?;
            let size = artifact.len() as u64;
            Ok(Precompiled {
                key,
                already_cached: false,
                size,
                compile_time: took,
            })
        })
    }

    /// Removes the artifact of `wasm` under `engine` from the in-process tier and every writable
    /// storage tier.
    pub fn invalidate(&self, engine: &Engine, wasm: &[u8]) {
        let key = self.key_for(engine, wasm);
        futures::executor::block_on(self.cache.invalidate(&key));
    }

    /// Empties the in-process tier (storage tiers keep their entries).
    pub fn clear_live(&self) {
        self.cache.clear_live();
    }

    /// Waits until background writes to storage tiers have finished. Call before exiting.
    pub fn flush(&self) {
        self.cache.flush();
    }

    /// Counters of this cache and its tiers.
    pub fn stats(&self) -> WasmStats {
        WasmStats::from_core(self.cache.stats())
    }

    /// The key of `content` with `extras` under `engine`.
    fn key(&self, engine: &Engine, content: &ContentHash, extras: &[u8]) -> CacheKey {
        self.engine_key(engine)
            .artifact_key(&self.namespace, content, extras)
    }

    /// Makes every key of `engine` derive from `key` instead of from the engine's own settings,
    /// for engines configured through a [`CompileTarget`](crate::CompileTarget): pin
    /// [`CompileTarget::engine_key`](crate::CompileTarget::engine_key), and a compiling engine
    /// (say on a CI host, for another target) and a node's engine without a compiler find the
    /// same entries. wasmtime still checks every loaded artifact against the engine: one that
    /// does not fit is counted as [`incompatible`](WasmStats::incompatible) and recompiled.
    pub fn pin_engine_key(&self, engine: &Engine, key: EngineKey) {
        let mut engines = self.engines.write();
        engines.retain(|(weak, _)| weak.upgrade().is_some_and(|e| !Engine::same(&e, engine)));
        engines.push((engine.weak(), key));
    }

    /// `engine`'s key, remembered per engine (engines that were dropped are forgotten).
    fn engine_key(&self, engine: &Engine) -> EngineKey {
        let known = |list: &[(wasmtime::EngineWeak, EngineKey)]| {
            list.iter().find_map(|(weak, key)| {
                weak.upgrade()
                    .filter(|e| Engine::same(e, engine))
                    .map(|_| *key)
            })
        };
        if let Some(key) = known(&self.engines.read()) {
            return key;
        }
        let key = EngineKey::of(engine);
        let mut engines = self.engines.write();
        engines.retain(|(weak, _)| weak.upgrade().is_some());
        if known(&engines).is_none() {
            engines.push((engine.weak(), key));
        }
        key
    }

    /// [`obtain`](Self::obtain) for the synchronous entry points: a live hit returns without
    /// entering an executor.
    fn obtain_blocking<'w, S, F>(
        &self,
        engine: &Engine,
        key: CacheKey,
        content: ContentHash,
        source: S,
        exec: Exec,
    ) -> Result<A>
    where
        S: FnOnce() -> F,
        F: Future<Output = std::result::Result<Cow<'w, [u8]>, Failure<Error>>>,
    {
        if let Some(artifact) = self.cache.get_live(engine, &key) {
            return Ok(artifact);
        }
        futures::executor::block_on(self.obtain(engine, key, content, source, exec))
    }

    /// The one path behind every entry point: the core cache with this crate's produce step.
    pub(crate) async fn obtain<'w, S, F>(
        &self,
        engine: &Engine,
        key: CacheKey,
        content: ContentHash,
        source: S,
        exec: Exec,
    ) -> Result<A>
    where
        S: FnOnce() -> F,
        F: Future<Output = std::result::Result<Cow<'w, [u8]>, Failure<Error>>>,
    {
        let produce = || async move {
            let wasm = source().await?;
            // The wrong kind of binary is this caller's input, detected without compiling.
            check_kind::<A>(content, &wasm).map_err(Failure::Input)?;
            let shared = |e: Error| Failure::Compute(ComputeError::failed(key, e));
            let artifact = compile::<A>(engine, content, wasm, exec)
                .await
                .map_err(shared)?;
            // SAFETY: `artifact` was just produced by `precompile` in this process.
            #[allow(unsafe_code)]
            let loaded = unsafe { A::load(engine, &artifact) };
            let artifact_value = loaded.map_err(|e| {
                shared(Error::Load {
                    kind: A::KIND,
                    content,
                    source: Arc::new(e),
                })
            })?;
            Ok(Produced {
                value: artifact_value,
                payload: Some(Bytes::from(artifact)),
            })
        };
        match self.cache.get_or_produce(engine, key, exec, produce).await {
            Ok(artifact) => Ok(artifact),
            Err(Failure::Input(e)) => Err(e),
            Err(Failure::Compute(e)) => Err(compute_error::<A>(content, &e)),
        }
    }
}

/// This crate's error back out of a shared compute failure.
pub(crate) fn compute_error<A: Artifact>(content: ContentHash, e: &ComputeError) -> Error {
    match (e.downcast_ref::<Error>(), e) {
        (Some(e), _) => e.clone(),
        (None, ComputeError::Refused { .. }) => Error::NotInFleet {
            kind: A::KIND,
            content,
            source: e.clone(),
        },
        (None, _) => Error::Panicked {
            kind: A::KIND,
            content,
        },
    }
}

/// Refuses a precompiled artifact, and the other kind of binary, before compiling.
fn check_kind<A: Artifact>(content: ContentHash, wasm: &[u8]) -> Result<()> {
    match (detect(wasm), A::KIND) {
        (Detected::Precompiled, _) => Err(Error::Precompiled { content }),
        (Detected::Component, ArtifactKind::Module) => {
            Err(wrong_kind::<A>(content, ArtifactKind::Component))
        }
        (Detected::Module, ArtifactKind::Component) => {
            Err(wrong_kind::<A>(content, ArtifactKind::Module))
        }
        _ => Ok(()),
    }
}

/// Compiles `wasm` into artifact bytes, on Tokio's blocking pool for [`Exec::Blocking`].
async fn compile<A: Artifact>(
    engine: &Engine,
    content: ContentHash,
    wasm: Cow<'_, [u8]>,
    exec: Exec,
) -> Result<Vec<u8>> {
    let outcome = match exec {
        Exec::Inline => precompile_caught::<A>(engine, &wasm),
        Exec::Blocking => {
            let engine = engine.clone();
            let wasm = wasm.into_owned();
            maybe_spawn_blocking(move || precompile_caught::<A>(&engine, &wasm)).await
        }
    };
    match outcome {
        Ok(Ok(artifact)) => Ok(artifact),
        Ok(Err(e)) => {
            tracing::debug!(%content, error = format!("{e:#}"), "compile failed");
            Err(Error::Compile {
                kind: A::KIND,
                content,
                source: Arc::new(e),
            })
        }
        Err(_panic) => {
            tracing::error!(%content, "compiling panicked");
            Err(Error::Panicked {
                kind: A::KIND,
                content,
            })
        }
    }
}

fn wrong_kind<A: Artifact>(content: ContentHash, found: ArtifactKind) -> Error {
    Error::WrongKind {
        content,
        expected: A::KIND,
        found,
    }
}

fn precompile_caught<A: Artifact>(
    engine: &Engine,
    wasm: &[u8],
) -> std::result::Result<wasmtime::Result<Vec<u8>>, PanicPayload> {
    std::panic::catch_unwind(AssertUnwindSafe(|| A::precompile(engine, wasm)))
}

fn source_error(
    content: ContentHash,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Source {
        content,
        source: Arc::from(e.into()),
    }
}

/// The caller's bytes, checked against the hash they supplied.
pub(crate) fn checked_source<'w, B, E>(
    content: ContentHash,
    loaded: std::result::Result<B, E>,
) -> Result<Cow<'w, [u8]>>
where
    B: AsRef<[u8]>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = loaded.map_err(|e| source_error(content, e))?;
    let found = ContentHash::of(bytes.as_ref());
    if found != content {
        return Err(Error::HashMismatch {
            expected: content,
            found,
        });
    }
    Ok(Cow::Owned(bytes.as_ref().to_vec()))
}
