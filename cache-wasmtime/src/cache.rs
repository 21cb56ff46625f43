//! [`WasmCache`]: the live tier, single-flight, verified loads and compiles.

use std::borrow::Cow;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warmcache_core::{
    CacheKey, CanonicalHasher, Found, Join, Namespace, SingleFlight, Tiered, WaitOutcome,
    maybe_spawn_blocking,
};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::artifact::{Artifact, Detected, detect};
use crate::error::{Error, Result};
use crate::key::{ArtifactKind, ContentHash, EngineKey, WASMTIME_VERSION};
use crate::stats::{Counters, WasmStats, add, nanos};

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

/// Weighs loaded artifacts by their code image when the tier is bounded by bytes.
#[derive(Debug, Clone, Copy)]
struct LiveWeighter {
    by_bytes: bool,
}

impl<A: Artifact> quick_cache::Weighter<CacheKey, A> for LiveWeighter {
    fn weight(&self, _key: &CacheKey, artifact: &A) -> u64 {
        if self.by_bytes {
            artifact.image_size().max(1)
        } else {
            1
        }
    }
}

type Live<A> = quick_cache::sync::Cache<CacheKey, A, LiveWeighter>;

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
        let live = match self.live {
            LiveBound::Count(0) | LiveBound::Bytes(0) => None,
            LiveBound::Count(count) => Some(Live::with_weighter(
                usize::try_from(count).unwrap_or(usize::MAX),
                count,
                LiveWeighter { by_bytes: false },
            )),
            // One shard, so an artifact may use the whole budget (quick_cache refuses items
            // larger than a shard's share).
            LiveBound::Bytes(bytes) => match quick_cache::OptionsBuilder::new()
                .estimated_items_capacity(64)
                .weight_capacity(bytes)
                .shards(1)
                .build()
            {
                Ok(options) => Some(Live::with_options(
                    options,
                    LiveWeighter { by_bytes: true },
                    Default::default(),
                    Default::default(),
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "in-process tier disabled");
                    None
                }
            },
        };
        WasmCache {
            namespace: Namespace::new(A::KIND.namespace()),
            tiers: self.tiers.unwrap_or_else(|| Tiered::builder().build()),
            live,
            flights: SingleFlight::new(),
            counters: Counters::default(),
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
///   verified (tag or MAC, key echo, length). An entry that verifies but that wasmtime rejects
///   is counted as [`incompatible`](WasmStats::incompatible), recompiled and overwritten.
/// * **File tiers are mapped**: when a tier offers local files (`warmcache-fs`), the entry is
///   verified through a mapping and loaded with `Module::deserialize_open_file`, without
///   reading it into memory.
/// * **One compile per artifact**: concurrent requests for one key run one lookup and at most
///   one compile; the rest wait and share the result, or its error. Other keys never wait.
/// * **Artifacts stay with their engine**: an artifact is handed out only to callers of the
///   engine it was loaded into; another engine with the same settings gets its own copy from
///   the byte tiers.
///
/// Failures of storage tiers are never errors: they are misses, counted in
/// [`stats`](Self::stats).
pub struct WasmCache<A> {
    namespace: Namespace,
    tiers: Tiered,
    live: Option<Live<A>>,
    flights: SingleFlight<CacheKey, Result<A>>,
    counters: Counters,
    /// Engine keys of the engines seen so far, so a hit does not hash an engine's settings.
    engines: parking_lot::RwLock<Vec<(wasmtime::EngineWeak, EngineKey)>>,
}

impl<A: Artifact> std::fmt::Debug for WasmCache<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmCache")
            .field("namespace", &self.namespace.name())
            .field("tiers", &self.tiers)
            .field("live", &self.live.as_ref().map(|l| l.len()))
            .field("counters", &self.counters)
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

/// Where compiles and loads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exec {
    /// On the calling thread (the synchronous API).
    Inline,
    /// On Tokio's blocking pool when a runtime is current (the async API), so executor
    /// threads are not held for seconds.
    Blocking,
}

/// What the leader of a flight produced.
struct Led<A> {
    result: Result<A>,
    /// A freshly compiled artifact to store, with its producer string.
    store: Option<(Vec<u8>, String)>,
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
        &self.tiers
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
        futures::executor::block_on(self.obtain(
            engine,
            key,
            content,
            || std::future::ready(Ok(Cow::Borrowed(wasm))),
            Exec::Inline,
        ))
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
        let source = move || std::future::ready(checked_source(content, load()));
        futures::executor::block_on(self.obtain(engine, key, content, source, Exec::Inline))
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
        let source = move || async move { checked_source(content, load().await) };
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
        let source = move || {
            std::future::ready(
                prepare(wasm, extras)
                    .map(Cow::Owned)
                    .map_err(|e| source_error(content, e)),
            )
        };
        futures::executor::block_on(self.obtain(engine, key, content, source, Exec::Inline))
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
        futures::executor::block_on(async {
            if let Some(found) = self.tiers.get(&key).await {
                return Ok(Precompiled {
                    key,
                    already_cached: true,
                    size: found.opened.payload.len() as u64,
                    compile_time: Duration::ZERO,
                });
            }
            let (artifact, took) = self
                .compile(engine, content, Cow::Borrowed(wasm), Exec::Inline)
                .await?;
            let size = artifact.len() as u64;
            self.tiers
                .put(&key, A::KIND.envelope_kind(), &producer(took), &artifact)
                .await;
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
        if let Some(live) = &self.live {
            live.remove(&key);
        }
        futures::executor::block_on(self.tiers.delete(&key));
    }

    /// Empties the in-process tier (storage tiers keep their entries).
    pub fn clear_live(&self) {
        if let Some(live) = &self.live {
            live.clear();
        }
    }

    /// Waits until background writes to storage tiers have finished. Call before exiting.
    pub fn flush(&self) {
        self.tiers.flush();
    }

    /// Counters of this cache and its tiers.
    pub fn stats(&self) -> WasmStats {
        let live = self.live.as_ref().map_or(0, |l| l.len() as u64);
        self.counters.snapshot(live, self.tiers.stats())
    }

    /// The key of `content` with `extras` under `engine`.
    fn key(&self, engine: &Engine, content: &ContentHash, extras: &[u8]) -> CacheKey {
        self.engine_key(engine)
            .artifact_key(&self.namespace, content, extras)
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

    fn live_get(&self, engine: &Engine, key: &CacheKey) -> Option<A> {
        let artifact = self.live.as_ref()?.get(key)?;
        if !Engine::same(artifact.engine(), engine) {
            return None;
        }
        add(&self.counters.live_hits, 1);
        Some(artifact)
    }

    /// The one path behind every entry point.
    async fn obtain<'w, S, F>(
        &self,
        engine: &Engine,
        key: CacheKey,
        content: ContentHash,
        source: S,
        exec: Exec,
    ) -> Result<A>
    where
        S: FnOnce() -> F,
        F: Future<Output = Result<Cow<'w, [u8]>>>,
    {
        if let Some(artifact) = self.live_get(engine, &key) {
            return Ok(artifact);
        }
        let guard = loop {
            match self.flights.join(&key) {
                Join::Leader(guard) => break Some(guard),
                Join::Waiter(waiter) => {
                    add(&self.counters.waits, 1);
                    match waiter.wait_async().await {
                        WaitOutcome::Done(Ok(artifact)) => {
                            if Engine::same(artifact.engine(), engine) {
                                return Ok(artifact);
                            }
                            // Loaded into another engine with the same settings: load our own
                            // copy from storage, outside the flight.
                            break None;
                        }
                        WaitOutcome::Done(Err(e)) => return Err(e),
                        WaitOutcome::Panicked => {
                            return Err(Error::Panicked {
                                kind: A::KIND,
                                content,
                            });
                        }
                        WaitOutcome::Abandoned => continue,
                    }
                }
            }
        };
        let led = self.lead(engine, &key, content, source, exec).await;
        if let (Ok(artifact), Some(live)) = (&led.result, &self.live) {
            live.insert(key, artifact.clone());
        }
        // Waiters need not wait for the storage writes.
        if let Some(guard) = guard {
            guard.complete(led.result.clone());
        }
        if let Some((artifact, producer)) = led.store {
            self.tiers
                .put(&key, A::KIND.envelope_kind(), &producer, &artifact)
                .await;
        }
        led.result
    }

    /// As the leader: the in-process tier again (a previous leader may just have filled it),
    /// then storage, then a compile.
    async fn lead<'w, S, F>(
        &self,
        engine: &Engine,
        key: &CacheKey,
        content: ContentHash,
        source: S,
        exec: Exec,
    ) -> Led<A>
    where
        S: FnOnce() -> F,
        F: Future<Output = Result<Cow<'w, [u8]>>>,
    {
        if let Some(artifact) = self.live_get(engine, key) {
            return Led {
                result: Ok(artifact),
                store: None,
            };
        }
        if let Some(artifact) = self.load_stored(engine, key, exec).await {
            return Led {
                result: Ok(artifact),
                store: None,
            };
        }
        add(&self.counters.misses, 1);
        let wasm = match source().await {
            Ok(wasm) => wasm,
            Err(e) => {
                return Led {
                    result: Err(e),
                    store: None,
                };
            }
        };
        let (artifact_bytes, took) = match self.compile(engine, content, wasm, exec).await {
            Ok(compiled) => compiled,
            Err(e) => {
                return Led {
                    result: Err(e),
                    store: None,
                };
            }
        };
        // SAFETY: `artifact_bytes` was just produced by `precompile` in this process.
        #[allow(unsafe_code)]
        let loaded = unsafe { A::load(engine, &artifact_bytes) };
        match loaded {
            Ok(artifact) => Led {
                result: Ok(artifact),
                store: Some((artifact_bytes, producer(took))),
            },
            Err(e) => Led {
                result: Err(Error::Load {
                    kind: A::KIND,
                    content,
                    source: Arc::new(e),
                }),
                store: None,
            },
        }
    }

    /// A verified stored entry loaded into `engine`, or `None` (after counting why).
    async fn load_stored(&self, engine: &Engine, key: &CacheKey, exec: Exec) -> Option<A> {
        let started = Instant::now();
        let found = self.tiers.get_file(key).await?;
        let meta = found.meta();
        if ArtifactKind::from_envelope_kind(meta.kind) != Some(A::KIND) {
            // Keys are per kind, so only a key collision or a foreign writer gets here.
            add(&self.counters.incompatible, 1);
            tracing::warn!(%key, kind = meta.kind, "stored entry is not a {}", A::KIND);
            return None;
        }
        let saved = recorded_compile_time(&meta.producer);
        let tier = found.tier();
        let from_file = matches!(found, Found::File(_));
        add(&self.counters.stored_loads, 1);
        let loaded = match exec {
            Exec::Inline => load_found::<A>(engine, found),
            Exec::Blocking => {
                let engine = engine.clone();
                maybe_spawn_blocking(move || load_found::<A>(&engine, found)).await
            }
        };
        match loaded {
            Ok(artifact) => {
                add(&self.counters.tier_hits, 1);
                if from_file {
                    add(&self.counters.file_loads, 1);
                }
                add(&self.counters.load_nanos, nanos(started.elapsed()));
                add(&self.counters.saved_nanos, nanos(saved));
                tracing::debug!(%key, tier, from_file, elapsed = ?started.elapsed(), "loaded {}", A::KIND);
                Some(artifact)
            }
            Err(e) => {
                add(&self.counters.incompatible, 1);
                tracing::warn!(
                    %key, tier, error = format!("{e:#}"),
                    "verified entry rejected by wasmtime; recompiling"
                );
                None
            }
        }
    }

    /// Checks what `wasm` is and compiles it, counting the compile.
    async fn compile(
        &self,
        engine: &Engine,
        content: ContentHash,
        wasm: Cow<'_, [u8]>,
        exec: Exec,
    ) -> Result<(Vec<u8>, Duration)> {
        match (detect(&wasm), A::KIND) {
            (Detected::Precompiled, _) => return Err(Error::Precompiled { content }),
            (Detected::Component, ArtifactKind::Module) => {
                return Err(wrong_kind::<A>(content, ArtifactKind::Component));
            }
            (Detected::Module, ArtifactKind::Component) => {
                return Err(wrong_kind::<A>(content, ArtifactKind::Module));
            }
            _ => {}
        }
        add(&self.counters.compiles, 1);
        let started = Instant::now();
        let outcome = match exec {
            Exec::Inline => precompile_caught::<A>(engine, &wasm),
            Exec::Blocking => {
                let engine = engine.clone();
                let wasm = wasm.into_owned();
                maybe_spawn_blocking(move || precompile_caught::<A>(&engine, &wasm)).await
            }
        };
        let took = started.elapsed();
        add(&self.counters.compile_nanos, nanos(took));
        match outcome {
            Ok(Ok(artifact)) => Ok((artifact, took)),
            Ok(Err(e)) => {
                add(&self.counters.compile_errors, 1);
                tracing::debug!(%content, error = format!("{e:#}"), "compile failed");
                Err(Error::Compile {
                    kind: A::KIND,
                    content,
                    source: Arc::new(e),
                })
            }
            Err(_panic) => {
                add(&self.counters.compile_errors, 1);
                tracing::error!(%content, "compiling panicked");
                Err(Error::Panicked {
                    kind: A::KIND,
                    content,
                })
            }
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

fn load_found<A: Artifact>(engine: &Engine, found: Found) -> wasmtime::Result<A> {
    // SAFETY (both arms): `Tiered` returns only entries whose envelope verified for this key:
    // the tag (or MAC) covers the payload, so it is exactly what `precompile` stored. The file
    // arm's file is not modified in place by file-offering backends (see `Tiered::get_file`).
    #[allow(unsafe_code)]
    match found {
        Found::Bytes(hit) => unsafe { A::load(engine, &hit.opened.payload) },
        Found::File(hit) => {
            let file = match hit.file.try_clone() {
                Ok(file) => file,
                Err(e) => return Err(wasmtime::Error::from(e)),
            };
            unsafe { A::load_file(engine, file, hit.payload()) }
        }
    }
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
fn checked_source<'w, B, E>(
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

/// The producer string stored with an artifact: who made it and how long compiling took, so a
/// later hit knows how much time it saved.
fn producer(compile_time: Duration) -> String {
    format!(
        "wasmtime {WASMTIME_VERSION} {} compile_ms={}",
        crate::key::host(),
        compile_time.as_millis()
    )
}

/// The compile time recorded by [`producer`], or zero for entries without one.
pub(crate) fn recorded_compile_time(producer: &str) -> Duration {
    producer
        .split_ascii_whitespace()
        .find_map(|field| field.strip_prefix("compile_ms="))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_round_trips_compile_time() {
        let p = producer(Duration::from_millis(1234));
        assert!(p.starts_with("wasmtime "));
        assert_eq!(recorded_compile_time(&p), Duration::from_millis(1234));
        assert_eq!(recorded_compile_time("someone else"), Duration::ZERO);
        assert_eq!(recorded_compile_time("compile_ms=x"), Duration::ZERO);
    }
}
