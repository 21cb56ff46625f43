//! [`WasmCache`]: wasmtime modules and components over warmcache-core's one cache front.
//!
//! Everything about lookups, single-flight and storage is `warmcache_core::Cache`'s; this file
//! says how an artifact is compiled ([`WasmCache`]'s produce step), how a verified entry
//! becomes a loaded artifact ([`ArtifactCodec`]), and which failures are whose.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warmcache_core::backend::maybe_spawn_blocking;
use warmcache_core::{
    BoxError, Cache, CacheKey, Codec, ComputeError, Entry, Exec, Failure, Namespace, Produced,
    Stats, Tiered,
};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::artifact::{Artifact, Detected, detect};
use crate::baseline::{Baseline, lower_priority};
use crate::error::{Error, Result};
use crate::explain::{self, Field, KEY_SCHEMA};
use crate::input::{Opened, Wasm};
use crate::isolate::Isolation;
use crate::key::{ArtifactKind, ContentHash, EngineKey, WASMTIME_VERSION};
use crate::level::{Answer, CpuLevels, LevelsOf};

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
    remember_failures: Option<Duration>,
    isolation: Option<Isolation>,
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

    /// Remembers a failed compile for `lifetime` in every writable storage tier, so that the
    /// next request for it in any process sharing a tier gets [`Error::Remembered`] at once
    /// instead of compiling again (default: not remembered). A compile's failure depends only on
    /// what the key covers (the wasm, wasmtime, the engine's settings), so a remembered one is
    /// the failure that compile would have; the lifetime bounds how long a passing cause (memory
    /// pressure) is believed. Panics are not remembered.
    pub fn remember_failures(mut self, lifetime: Duration) -> Self {
        self.remember_failures = Some(lifetime);
        self
    }

    /// Compiles in a worker process under `isolation`'s limits instead of in this process
    /// (default: in this process). A module that goes over a limit fails with
    /// [`Error::OverLimit`], and this process is unharmed. The artifact the worker returns is
    /// loaded into the engine (wasmtime checks that it fits) before it is stored; a
    /// [`precompile`](WasmCache::precompile) stores it as it comes.
    pub fn isolate(mut self, isolation: Isolation) -> Self {
        self.isolation = Some(isolation);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> WasmCache<A> {
        let builder = Cache::builder(A::KIND.namespace(), ArtifactCodec::<A>(PhantomData));
        let builder = match self.remember_failures {
            Some(lifetime) => builder.remember_failures(lifetime),
            None => builder,
        };
        let builder = match &self.isolation {
            Some(isolation) => builder.failure_context(isolation.context()),
            None => builder,
        };
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
            cache: Arc::new(builder.build()),
            engines: parking_lot::RwLock::new(Vec::new()),
            isolation: self.isolation.map(Arc::new),
            levels: parking_lot::RwLock::new(Vec::new()),
            baselines: parking_lot::RwLock::new(Vec::new()),
            descriptions: parking_lot::RwLock::new(Vec::new()),
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
///   wasmtime rejects is counted as [`decode_errors`](Stats::decode_errors), recompiled and
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
    /// Shared with the threads that compile optimized code behind baseline code.
    cache: Arc<Cache<A, ArtifactCodec<A>>>,
    /// Engine keys of the engines seen so far, so a hit does not hash an engine's settings.
    engines: parking_lot::RwLock<Vec<(wasmtime::EngineWeak, EngineKey)>>,
    /// Where compiles run, when not in this process ([`WasmCacheBuilder::isolate`]).
    isolation: Option<Arc<Isolation>>,
    /// The CPU levels engines look up instead of their own key ([`Self::use_cpu_levels`]).
    levels: parking_lot::RwLock<LevelsOf>,
    /// Baseline-first compiles per engine ([`Self::use_baseline`]).
    baselines: parking_lot::RwLock<Vec<(wasmtime::EngineWeak, Arc<Baseline>)>>,
    /// Engine settings recorded in entries ([`Self::describe_engine`]).
    descriptions: parking_lot::RwLock<Vec<(wasmtime::EngineWeak, Vec<Field>)>>,
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
            remember_failures: None,
            isolation: None,
            _artifact: PhantomData,
        }
    }

    /// A cache over `tiers` with the default in-process tier.
    pub fn new(tiers: Tiered) -> Self {
        Self::builder().tiers(tiers).build()
    }

    /// The key of the wasm with content hash `content` under `engine` (not
    /// [`prepared`](Wasm::prepared)); with [CPU levels](Self::use_cpu_levels), the best
    /// level's.
    pub fn key_for(&self, engine: &Engine, content: &ContentHash) -> CacheKey {
        self.key_and_inputs(engine, content, &[]).0
    }

    /// The wasm an entry was compiled from, when a request with `engine` for that wasm looks
    /// the entry up: `key` is the entry's key and `inputs` the key inputs its metadata records
    /// ([`EnvelopeMeta::inputs`](warmcache_core::EnvelopeMeta::inputs)). `None` for an entry of
    /// another engine or kind, of a CPU level this cache does not look up, or that records no
    /// inputs (written before envelope format 4). For warming a host from a shared tier with
    /// the entries it will load (`warmcache prefetch`).
    pub fn wanted(&self, engine: &Engine, key: &CacheKey, inputs: &str) -> Option<ContentHash> {
        let fields = explain::parse(inputs);
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if field("kind")? != A::KIND.as_str() {
            return None;
        }
        let content: ContentHash = field("content")?.parse().ok()?;
        let extras = hex::decode(field("extras").unwrap_or_default()).ok()?;
        self.lookup_keys(engine, &content, &extras)
            .contains(key)
            .then_some(content)
    }

    /// The storage tiers.
    pub fn tiers(&self) -> &Tiered {
        self.cache.tiers()
    }

    /// Returns the compiled `wasm` for `engine`: from the in-process tier, from storage, or
    /// compiled and stored. `wasm` is bytes (binary or text), or any other [`Wasm`].
    ///
    /// Blocks the calling thread; usable from any thread. Concurrent calls for the same wasm and
    /// settings compile once. In async code use
    /// [`get_or_compile_async`](Self::get_or_compile_async).
    ///
    /// # Errors
    ///
    /// [`Error::Compile`] when wasmtime cannot compile it (invalid wasm, a disabled feature, an
    /// engine without a compiler), [`Error::WrongKind`] for a component passed to a module cache
    /// or the reverse, [`Error::Precompiled`] for an artifact passed as wasm, and for the other
    /// forms of [`Wasm`] the failures to supply it ([`Error::Input`], [`Error::Source`],
    /// [`Error::HashMismatch`]). Nothing is cached for a failed compile.
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
    /// assert_eq!(cache.stats().computes, 1);
    /// assert_eq!(cache.stats().live_hits, 1);
    /// # let _ = (module, again);
    /// # Ok::<(), warmcache_wasmtime::Error>(())
    /// ```
    pub fn get_or_compile<'a>(&self, engine: &Engine, wasm: impl Into<Wasm<'a>>) -> Result<A> {
        let opened = wasm.into().open()?;
        let key = self.key(engine, &opened.content, opened.extras());
        // A live hit returns without entering an executor.
        if let Some(artifact) = self.cache.get_live(engine, &key) {
            return Ok(artifact);
        }
        futures::executor::block_on(self.obtain(engine, opened, Exec::Inline))
    }

    /// [`get_or_compile`](Self::get_or_compile) for async callers. Under a Tokio runtime,
    /// compiling and loading run on its blocking pool; waiting for another caller's compile
    /// does not block the executor.
    ///
    /// # Errors
    ///
    /// As for [`get_or_compile`](Self::get_or_compile).
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
    pub async fn get_or_compile_async<'a>(
        &self,
        engine: &Engine,
        wasm: impl Into<Wasm<'a>>,
    ) -> Result<A> {
        self.obtain(engine, wasm.into().open()?, Exec::Blocking)
            .await
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
    pub fn precompile<'a>(
        &self,
        engine: &Engine,
        wasm: impl Into<Wasm<'a>>,
    ) -> Result<Precompiled> {
        let opened = wasm.into().open()?;
        futures::executor::block_on(opened.run(|opened| self.precompile_once(engine, opened)))
    }

    async fn precompile_once(&self, engine: &Engine, opened: Opened<'_>) -> Result<Precompiled> {
        let content = opened.content;
        let (key, inputs) = self.key_and_inputs(engine, &content, opened.extras());
        if let Some(found) = self.cache.tiers().get(&key, A::KIND.envelope_kind()).await {
            return Ok(Precompiled {
                key,
                already_cached: true,
                size: found.payload().len() as u64,
                compile_time: Duration::ZERO,
            });
        }
        let wasm = opened.bytes(key).await.map_err(|e| match e {
            Failure::Input(e) => e,
            Failure::Compute(e) => compute_error::<A>(content, &e),
        })?;
        check_kind::<A>(content, &wasm)?;
        // With CPU levels the key is the best level's, and so must the code be.
        let levels = self.levels_of(engine);
        let compiler = levels.as_deref().map_or(engine, CpuLevels::compiler);
        let compiled = async {
            compile_artifact::<A>(
                compiler,
                self.isolation.as_ref(),
                content,
                wasm,
                Exec::Inline,
            )
            .await
            .map(Bytes::from)
        };
        let (artifact, took) = self
            .cache
            .compute_and_store(key, explain::text(&inputs), compiled)
            .await?;
        Ok(Precompiled {
            key,
            already_cached: false,
            size: artifact.len() as u64,
            compile_time: took,
        })
    }

    /// Removes the artifact of `wasm` under `engine` from the in-process tier and every writable
    /// storage tier.
    ///
    /// # Errors
    ///
    /// When `wasm` cannot be read to hash it ([`Error::Input`]).
    pub fn invalidate<'a>(&self, engine: &Engine, wasm: impl Into<Wasm<'a>>) -> Result<()> {
        let opened = wasm.into().open()?;
        for key in self.lookup_keys(engine, &opened.content, opened.extras()) {
            futures::executor::block_on(self.cache.invalidate(&key));
        }
        Ok(())
    }

    /// Pins the compiled `wasm` for `engine` (or unpins it, `pinned = false`) in the storage
    /// tiers that keep pins (a file tier, redb, RocksDB): their eviction never takes it, while
    /// it counts against their capacity (see [`Backend::pin`](warmcache_core::Backend::pin)).
    /// To pin, the artifact is obtained first (loaded, or compiled and stored), so there is an
    /// entry; with [CPU levels](Self::use_cpu_levels), every level's entry present is pinned.
    ///
    /// Returns each tier's name with whether it holds the entry (unpinning what is not there
    /// changes nothing), or why the pin failed there: [`warmcache_core::Error::Capacity`] when
    /// the pinned entries would take more than
    /// [`MAX_PINNED_SHARE`](warmcache_core::backend::MAX_PINNED_SHARE) of its capacity.
    ///
    /// # Errors
    ///
    /// When pinning, those of [`get_or_compile`](Self::get_or_compile); when unpinning, when
    /// `wasm` cannot be read to hash it ([`Error::Input`]).
    pub fn pin<'a>(
        &self,
        engine: &Engine,
        wasm: impl Into<Wasm<'a>>,
        pinned: bool,
    ) -> Result<Vec<(String, warmcache_core::Result<bool>)>> {
        let opened = wasm.into().open()?;
        let keys = self.lookup_keys(engine, &opened.content, opened.extras());
        if pinned {
            let obtain =
                opened.run(|opened| self.obtain_one(engine, opened, Exec::Inline, Code::Optimized));
            futures::executor::block_on(obtain)?;
        }
        // Per tier: present under any of the keys, or the first failure.
        let mut tiers: Vec<(String, warmcache_core::Result<bool>)> = Vec::new();
        for key in keys {
            for (tier, done) in futures::executor::block_on(self.tiers().pin(&key, pinned)) {
                match tiers.iter_mut().find(|(name, _)| *name == tier) {
                    None => tiers.push((tier, done)),
                    Some((_, held)) => match (&*held, done) {
                        (Ok(was), Ok(now)) => *held = Ok(*was || now),
                        (Ok(_), Err(e)) => *held = Err(e),
                        (Err(_), _) => {}
                    },
                }
            }
        }
        Ok(tiers)
    }

    /// Every key a request with `engine` looks up for the wasm with content hash `content`, in
    /// lookup order: its own key, or with [CPU levels](Self::use_cpu_levels) the native key
    /// (when it comes first) and each level's, best first. [`key_for`](Self::key_for) is the
    /// one a miss stores under. For fetching exactly a known module's entries from a shared
    /// tier (`warmcache prefetch --manifest`).
    pub fn keys_for(&self, engine: &Engine, content: &ContentHash) -> Vec<CacheKey> {
        self.lookup_keys(engine, content, &[])
    }

    /// Every key a request with `engine` looks up for `content`: its own, or its CPU levels'.
    fn lookup_keys(&self, engine: &Engine, content: &ContentHash, extras: &[u8]) -> Vec<CacheKey> {
        match self.levels_of(engine) {
            Some(levels) => self
                .level_keys(engine, &levels, content, extras)
                .into_iter()
                .map(|(_, key)| key)
                .collect(),
            None => vec![self.key(engine, content, extras)],
        }
    }

    /// Empties the in-process tier (storage tiers keep their entries).
    pub fn clear_live(&self) {
        self.cache.clear_live();
    }

    /// Waits until optimized compiles behind baseline code ([`Self::use_baseline`]) and
    /// background writes to storage tiers have finished. Call before exiting.
    pub fn flush(&self) {
        let baselines: Vec<Arc<Baseline>> = self
            .baselines
            .read()
            .iter()
            .map(|(_, b)| Arc::clone(b))
            .collect();
        for baseline in baselines {
            baseline.wait();
        }
        self.cache.flush();
    }

    /// Counters of this cache and its tiers.
    ///
    /// In warmcache-core's vocabulary: a compile is a `compute`, loading a stored artifact into
    /// the engine a `decode`, and an artifact wasmtime rejects as incompatible a
    /// `decode_error`.
    pub fn stats(&self) -> Stats {
        self.cache.stats()
    }

    /// The key of `content` with `extras` under `engine`.
    pub(crate) fn key(&self, engine: &Engine, content: &ContentHash, extras: &[u8]) -> CacheKey {
        self.engine_key(engine)
            .artifact_key(&self.namespace, content, extras)
    }

    /// Makes every key of `engine` derive from `key` instead of from the engine's own settings,
    /// for engines configured through a [`CompileTarget`](crate::CompileTarget): pin
    /// [`CompileTarget::engine_key`](crate::CompileTarget::engine_key), and a compiling engine
    /// (say on a CI host, for another target) and a node's engine without a compiler find the
    /// same entries. wasmtime still checks every loaded artifact against the engine: one that
    /// does not fit is counted as [`decode_errors`](Stats::decode_errors) and recompiled.
    pub fn pin_engine_key(&self, engine: &Engine, key: EngineKey) {
        let mut engines = self.engines.write();
        engines.retain(|(weak, _)| weak.upgrade().is_some_and(|e| !Engine::same(&e, engine)));
        engines.push((engine.weak(), key));
        drop(engines);
        if self.description(engine).is_empty() {
            // What the pinned key stands for is the caller's to describe.
            self.describe_engine(engine, [("cpu", "pinned key"), ("target", "pinned key")]);
        }
    }

    /// Records `fields` (name and value, such as `("opt_level", "speed")`) as the settings of
    /// `engine` in every entry compiled with it, so that [`explain`](Self::explain) can name
    /// the setting in which two configurations differ. wasmtime does not expose most of an
    /// engine's settings, so only described ones are named; the others still differ in the
    /// recorded engine digest. A field named `target` or `cpu` replaces the one this cache
    /// records by default (this host's triple, `native`).
    pub fn describe_engine<N: Into<String>, V: Into<String>>(
        &self,
        engine: &Engine,
        fields: impl IntoIterator<Item = (N, V)>,
    ) {
        let fields = fields
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        let mut all = self.descriptions.write();
        all.retain(|(weak, _)| weak.upgrade().is_some_and(|e| !Engine::same(&e, engine)));
        all.push((engine.weak(), fields));
    }

    fn description(&self, engine: &Engine) -> Vec<Field> {
        self.descriptions
            .read()
            .iter()
            .find_map(|(weak, fields)| {
                weak.upgrade()
                    .filter(|e| Engine::same(e, engine))
                    .map(|_| fields.clone())
            })
            .unwrap_or_default()
    }

    /// The key `engine` derives for `content` with `extras` (for CPU levels, the best
    /// level's), and the fields it is derived from.
    pub(crate) fn key_and_inputs(
        &self,
        engine: &Engine,
        content: &ContentHash,
        extras: &[u8],
    ) -> (CacheKey, Vec<Field>) {
        let levels = self.levels_of(engine);
        let engine_key = match &levels {
            Some(levels) => levels.best_key(),
            None => self.engine_key(engine),
        };
        let mut fields: Vec<Field> = [
            ("schema", KEY_SCHEMA.to_owned()),
            ("kind", A::KIND.as_str().to_owned()),
            ("wasmtime", WASMTIME_VERSION.to_owned()),
            ("target", crate::CompileTarget::host_triple()),
            ("cpu", "native".to_owned()),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
        let mut set = |name: &str, value: String| match fields.iter_mut().find(|(n, _)| n == name) {
            Some(field) => field.1 = value,
            None => fields.push((name.to_owned(), value)),
        };
        for (name, value) in self.description(engine) {
            set(&name, value);
        }
        if let Some(levels) = &levels {
            set("target", levels.best_triple().to_owned());
            set("cpu", levels.best().name().to_owned());
        }
        set("content", content.to_string());
        set("extras", hex::encode(extras));
        set("engine", engine_key.digest().to_string());
        (
            engine_key.artifact_key(&self.namespace, content, extras),
            fields,
        )
    }

    /// Makes `engine` look up artifacts by CPU level instead of by its own key: the best of
    /// `levels` present in the tiers, else compiled for the best level (with
    /// [`CpuLevels::compiler`], or the worker of [`WasmCacheBuilder::isolate`], which must
    /// compile for that level). `engine` loads what is found: build it for this host from
    /// the same base configuration as `levels`. The levels' [`used`](CpuLevels::used) counts
    /// say which level answered (several caches may share one `levels`).
    ///
    /// A full miss looks up every level before compiling (one read per level and tier).
    pub fn use_cpu_levels(&self, engine: &Engine, levels: Arc<CpuLevels>) {
        let mut all = self.levels.write();
        all.retain(|(weak, _)| weak.upgrade().is_some_and(|e| !Engine::same(&e, engine)));
        all.push((engine.weak(), levels));
    }

    fn levels_of(&self, engine: &Engine) -> Option<Arc<CpuLevels>> {
        registered(&self.levels.read(), engine)
    }

    /// Makes `engine` answer a cold miss with baseline code: see [`Baseline`]. The artifact
    /// returned then may belong to [`Baseline::engine`] instead of `engine`: create stores and
    /// linkers from its own engine. Engines with [CPU levels](Self::use_cpu_levels) look up
    /// levels instead, without baseline code. Call [`describe_engine`](Self::describe_engine)
    /// for `engine` first: baseline entries record its description with `compiler: winch`.
    pub fn use_baseline(&self, engine: &Engine, baseline: Arc<Baseline>) {
        let mut fields = self.description(engine);
        fields.push(("compiler".to_owned(), "winch".to_owned()));
        self.describe_engine(baseline.engine(), fields);
        let mut all = self.baselines.write();
        all.retain(|(weak, _)| weak.upgrade().is_some_and(|e| !Engine::same(&e, engine)));
        all.push((engine.weak(), baseline));
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

    /// The one path behind every entry point: the core cache with this crate's produce step.
    pub(crate) async fn obtain(
        &self,
        engine: &Engine,
        opened: Opened<'_>,
        exec: Exec,
    ) -> Result<A> {
        opened
            .run(|opened| self.obtain_one(engine, opened, exec, Code::Any))
            .await
    }

    /// One request (no retry of a mismatched hash): by CPU level when `engine` has levels,
    /// with baseline code first when it has a [`Baseline`] and `code` allows it, else under
    /// its own key.
    pub(crate) async fn obtain_one(
        &self,
        engine: &Engine,
        opened: Opened<'_>,
        exec: Exec,
        code: Code,
    ) -> Result<A> {
        if let Some(levels) = self.levels_of(engine) {
            return self.obtain_level(engine, &levels, opened, exec).await;
        }
        let baseline = registered(&self.baselines.read(), engine);
        if let Some(baseline) = baseline
            && code == Code::Any
        {
            return self.obtain_baseline(engine, &baseline, opened, exec).await;
        }
        let (key, inputs) = self.key_and_inputs(engine, &opened.content, opened.extras());
        let compile = Compile {
            engine,
            inputs: explain::text(&inputs),
        };
        self.obtain_once(engine, compile, key, opened, exec).await
    }

    /// The best level present, else compiled for the best level.
    async fn obtain_level(
        &self,
        engine: &Engine,
        levels: &CpuLevels,
        opened: Opened<'_>,
        exec: Exec,
    ) -> Result<A> {
        let (content, extras) = (opened.content, opened.extras().to_vec());
        for (answer, key) in self.level_keys(engine, levels, &content, &extras) {
            if let Some(found) = self.cache.lookup(engine, &key, exec).await {
                levels.count(answer);
                return Ok(found);
            }
        }
        let (best, inputs) = self.key_and_inputs(engine, &content, &extras);
        let compile = Compile {
            engine: levels.compiler(),
            inputs: explain::text(&inputs),
        };
        let artifact = self
            .obtain_once(engine, compile, best, opened, exec)
            .await?;
        levels.count(Answer::Level(levels.best()));
        Ok(artifact)
    }

    /// The keys a request with CPU `levels` looks up, in order, with the answer each gives.
    fn level_keys(
        &self,
        engine: &Engine,
        levels: &CpuLevels,
        content: &ContentHash,
        extras: &[u8],
    ) -> Vec<(Answer, CacheKey)> {
        let native = levels
            .is_native_first()
            .then(|| (Answer::Native, self.key(engine, content, extras)));
        let by_level = levels.levels().map(|(level, engine_key)| {
            let key = engine_key.artifact_key(&self.namespace, content, extras);
            (Answer::Level(level), key)
        });
        native.into_iter().chain(by_level).collect()
    }

    /// One request for `key`: `engine` loads, `compile` says how to compile on a miss.
    async fn obtain_once(
        &self,
        engine: &Engine,
        compile: Compile<'_>,
        key: CacheKey,
        opened: Opened<'_>,
        exec: Exec,
    ) -> Result<A> {
        let content = opened.content;
        let produce = || async move {
            let wasm = opened.bytes(key).await?;
            // The wrong kind of binary is this caller's input, detected without compiling.
            check_kind::<A>(content, &wasm).map_err(Failure::Input)?;
            produce::<A>(
                compile,
                engine,
                self.isolation.as_ref(),
                key,
                content,
                wasm,
                exec,
            )
            .await
        };
        match self.cache.get_or_produce(engine, key, exec, produce).await {
            Ok(artifact) => Ok(artifact),
            Err(Failure::Input(e)) => Err(e),
            Err(Failure::Compute(e)) => Err(compute_error::<A>(content, &e)),
        }
    }

    /// The optimized artifact if stored; else baseline code, found or compiled with Winch (in
    /// the worker when compiles are isolated), with the optimized compile started behind it;
    /// else, for a module Winch cannot compile, the optimized artifact at once.
    async fn obtain_baseline(
        &self,
        engine: &Engine,
        baseline: &Arc<Baseline>,
        opened: Opened<'_>,
        exec: Exec,
    ) -> Result<A> {
        let (content, extras) = (opened.content, opened.extras().to_vec());
        let (key, inputs) = self.key_and_inputs(engine, &content, &extras);
        // While the upgrade runs here, its baseline code answers without asking storage.
        if let Some(serving) = baseline.serving(&key)
            && let Some(found) = self.cache.get_live(baseline.engine(), &serving)
        {
            baseline.count_served();
            return Ok(found);
        }
        if let Some(found) = self.cache.lookup(engine, &key, exec).await {
            return Ok(found);
        }
        let wasm: Arc<[u8]> = match opened.bytes(key).await {
            Ok(wasm) => Arc::from(wasm),
            Err(Failure::Input(e)) => return Err(e),
            Err(Failure::Compute(e)) => return Err(compute_error::<A>(content, &e)),
        };
        check_kind::<A>(content, &wasm)?;
        let (fast_key, fast_inputs) = self.key_and_inputs(baseline.engine(), &content, &extras);
        let winch = Compile {
            engine: baseline.engine(),
            inputs: explain::text(&fast_inputs),
        };
        let worker = self
            .isolation
            .as_deref()
            .map(|i| Arc::new(i.for_baseline()));
        let fast = self.produce_stored(winch, worker.as_ref(), fast_key, content, &wasm, exec);
        let inputs = explain::text(&inputs);
        let e = match fast.await {
            Ok(artifact) => {
                baseline.count_served();
                self.upgrade(engine, baseline, (key, fast_key), inputs, content, wasm);
                return Ok(artifact);
            }
            Err(Failure::Input(e)) => return Err(e),
            Err(Failure::Compute(e)) => compute_error::<A>(content, &e),
        };
        // A module that takes the one-pass compiler over the worker's limits would take
        // Cranelift over them too: the input pays once, not twice.
        if let Error::OverLimit { .. } = e {
            return Err(e);
        }
        if baseline.count_unsupported(fast_key) {
            tracing::info!(%content, error = %e, "Winch cannot compile this module: compiling it with Cranelift");
        }
        let optimized = Compile { engine, inputs };
        let isolation = self.isolation.as_ref();
        match self
            .produce_stored(optimized, isolation, key, content, &wasm, exec)
            .await
        {
            Ok(artifact) => Ok(artifact),
            Err(Failure::Input(e)) => Err(e),
            Err(Failure::Compute(e)) => Err(compute_error::<A>(content, &e)),
        }
    }

    /// The artifact of `key` from the tiers, else compiled as `compile` says (in `worker` if
    /// given), loaded into `compile`'s engine and stored.
    async fn produce_stored(
        &self,
        compile: Compile<'_>,
        worker: Option<&Arc<Isolation>>,
        key: CacheKey,
        content: ContentHash,
        wasm: &[u8],
        exec: Exec,
    ) -> std::result::Result<A, Failure<Error>> {
        let engine = compile.engine;
        self.cache
            .get_or_produce(engine, key, exec, || {
                produce::<A>(
                    compile,
                    engine,
                    worker,
                    key,
                    content,
                    Cow::Borrowed(wasm),
                    exec,
                )
            })
            .await
    }

    /// Compiles the optimized artifact of `key` in a background thread at lower priority, once
    /// per key at a time, then removes the baseline entry `fast_key` from the private tiers.
    fn upgrade(
        &self,
        engine: &Engine,
        baseline: &Arc<Baseline>,
        (key, fast_key): (CacheKey, CacheKey),
        inputs: String,
        content: ContentHash,
        wasm: Arc<[u8]>,
    ) {
        if !baseline.begin(key, fast_key) {
            return;
        }
        let cache = Arc::clone(&self.cache);
        let isolation = self.isolation.clone();
        let (engine, upgrading) = (engine.clone(), Arc::clone(baseline));
        let run = move || {
            lower_priority();
            let compile = Compile {
                engine: &engine,
                inputs,
            };
            let produce = || {
                produce::<A>(
                    compile,
                    &engine,
                    isolation.as_ref(),
                    key,
                    content,
                    Cow::Borrowed(&wasm),
                    Exec::Inline,
                )
            };
            let done = upgrading.on_low_priority(|| {
                futures::executor::block_on(cache.get_or_produce(
                    &engine,
                    key,
                    Exec::Inline,
                    produce,
                ))
            });
            match &done {
                Ok(_) => futures::executor::block_on(cache.invalidate_private(&fast_key)),
                Err(e) => tracing::warn!(
                    %content,
                    error = ?e,
                    "compiling the optimized code behind baseline code failed; the baseline code stays in use"
                ),
            }
            upgrading.finish(&key, done.is_ok());
        };
        match std::thread::Builder::new()
            .name("warmcache-optimize".to_owned())
            .spawn(run)
        {
            Ok(thread) => baseline.keep(thread),
            Err(e) => {
                tracing::warn!(%content, "could not start the optimized compile behind baseline code: {e}");
                baseline.finish(&key, false);
            }
        }
    }
}

/// The value registered for `engine` in `list`.
fn registered<T>(list: &[(wasmtime::EngineWeak, Arc<T>)], engine: &Engine) -> Option<Arc<T>> {
    list.iter().find_map(|(weak, value)| {
        weak.upgrade()
            .filter(|e| Engine::same(e, engine))
            .map(|_| Arc::clone(value))
    })
}

/// Compiles `wasm` as `compile` says and loads it into `load`: the value and payload a miss
/// stores under `key`.
async fn produce<A: Artifact>(
    compile: Compile<'_>,
    load: &Engine,
    isolation: Option<&Arc<Isolation>>,
    key: CacheKey,
    content: ContentHash,
    wasm: Cow<'_, [u8]>,
    exec: Exec,
) -> std::result::Result<Produced<A>, Failure<Error>> {
    let shared = |e: Error| Failure::Compute(ComputeError::failed(key, e));
    let artifact = compile_artifact::<A>(compile.engine, isolation, content, wasm, exec)
        .await
        .map_err(shared)?;
    // SAFETY: `artifact` was just produced by `precompile`, in this process or in the worker
    // this cache was configured to run (its own program, over private pipes).
    #[allow(unsafe_code)]
    let loaded = unsafe { A::load(load, &artifact) };
    let value = loaded.map_err(|e| {
        shared(Error::Load {
            kind: A::KIND,
            content,
            source: Arc::new(e),
        })
    })?;
    Ok(Produced::new(value, Some(Bytes::from(artifact))).inputs(compile.inputs))
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
        (None, ComputeError::Remembered { message, age, .. }) => Error::Remembered {
            kind: A::KIND,
            content,
            message: message.clone(),
            age: *age,
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

/// Which code a request may be answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Baseline code when the engine has a [`Baseline`] and the optimized artifact is missing.
    Any,
    /// Only code of the caller's own engine (for a store the caller already made).
    Optimized,
}

/// How a miss compiles: with which engine, and the key's inputs to record.
struct Compile<'e> {
    engine: &'e Engine,
    inputs: String,
}

/// Compiles `wasm` into artifact bytes, in this process or in `isolation`'s worker, on Tokio's
/// blocking pool for [`Exec::Blocking`].
async fn compile_artifact<A: Artifact>(
    engine: &Engine,
    isolation: Option<&Arc<Isolation>>,
    content: ContentHash,
    wasm: Cow<'_, [u8]>,
    exec: Exec,
) -> Result<Vec<u8>> {
    if let Some(isolation) = isolation {
        return match exec {
            Exec::Inline => isolation.compile(A::KIND, content, &wasm),
            Exec::Blocking => {
                let (isolation, wasm) = (Arc::clone(isolation), wasm.into_owned());
                maybe_spawn_blocking(move || isolation.compile(A::KIND, content, &wasm)).await
            }
        };
    }
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
