//! The cache front: live decoded values, single-flight, codec and tiers.

use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use crate::codec::Codec;
use crate::error::BoxError;
use crate::key::{CacheKey, KeyBuilder, Namespace};
use crate::single_flight::{FlightGuard, Join, SingleFlight, WaitOutcome};
use crate::stats::{CacheCounters, Stats, TierCounters};
use crate::tiered::Tiered;

/// Why [`Cache::get_or_compute`] returned no value. Storage failures never appear here: a failing
/// tier is a miss, and the value is computed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ComputeError {
    /// The computation returned an error. Every caller waiting on it receives the same error;
    /// nothing is cached.
    #[error("computing the value for key {key} failed: {source}")]
    Failed {
        /// The key being computed.
        key: CacheKey,
        /// The computation's error, shared between waiters.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The computation panicked. The leader's thread resumes the panic; waiters get this.
    #[error("computing the value for key {key} panicked")]
    Panicked {
        /// The key being computed.
        key: CacheKey,
    },
}

impl ComputeError {
    /// The computation's error as `E`, when it failed with one.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            ComputeError::Failed { source, .. } => source.downcast_ref::<E>(),
            ComputeError::Panicked { .. } => None,
        }
    }
}

type Outcome<V> = Result<V, ComputeError>;

/// Weighs live values: by count, or by a caller-supplied function.
struct LiveWeighter<V> {
    weigh: Option<fn(&V) -> u64>,
}

impl<V> Clone for LiveWeighter<V> {
    fn clone(&self) -> Self {
        Self { weigh: self.weigh }
    }
}

impl<V> quick_cache::Weighter<CacheKey, V> for LiveWeighter<V> {
    fn weight(&self, _key: &CacheKey, value: &V) -> u64 {
        // Zero-weight items are never evicted by quick_cache; keep every item evictable.
        self.weigh.map_or(1, |f| f(value).max(1))
    }
}

type LiveCache<V> = quick_cache::sync::Cache<CacheKey, V, LiveWeighter<V>>;

/// Builds a [`Cache`]. Start with [`Cache::builder`].
pub struct CacheBuilder<V, C> {
    namespace: String,
    version: u32,
    codec: C,
    live_capacity: u64,
    live_weigh: Option<fn(&V) -> u64>,
    tiers: Option<Tiered>,
}

impl<V: Clone + Send + Sync + 'static, C: Codec<V>> CacheBuilder<V, C> {
    /// Bumps the caller's key schema version (default 0). Entries stored under another version are
    /// never returned: change it whenever what the computation does changes in a way its input
    /// does not show.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Keeps up to `count` decoded values in memory (default 1024; 0 disables the live tier).
    pub fn live_capacity(mut self, count: u64) -> Self {
        self.live_capacity = count;
        self.live_weigh = None;
        self
    }

    /// Keeps decoded values in memory up to a total `capacity` as measured by `weigh`.
    pub fn live_weighted(mut self, capacity: u64, weigh: fn(&V) -> u64) -> Self {
        self.live_capacity = capacity;
        self.live_weigh = Some(weigh);
        self
    }

    /// The storage tiers (default: none, only the live tier).
    pub fn tiers(mut self, tiers: Tiered) -> Self {
        self.tiers = Some(tiers);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Cache<V, C> {
        let namespace = Namespace::new(&self.namespace);
        let mut prefix = namespace.builder();
        prefix.integer(self.version).integer(self.codec.kind());
        let live = (self.live_capacity > 0).then(|| {
            let estimated = if self.live_weigh.is_some() {
                1024
            } else {
                usize::try_from(self.live_capacity).unwrap_or(usize::MAX)
            };
            LiveCache::with_weighter(
                estimated,
                self.live_capacity,
                LiveWeighter {
                    weigh: self.live_weigh,
                },
            )
        });
        Cache {
            prefix,
            producer: self.codec.producer(),
            codec: self.codec,
            live,
            flights: SingleFlight::new(),
            tiers: self.tiers.unwrap_or_else(|| Tiered::builder().build()),
            counters: CacheCounters::default(),
        }
    }
}

/// A cache of computed values over a [`Tiered`] storage stack.
///
/// Lookups go live tier (decoded values in memory), then the storage tiers (verified, decoded,
/// promoted), then the computation. Concurrent requests for one key run one computation
/// (single-flight); requests for other keys never wait on it. A computation that fails or panics
/// releases its waiters and caches nothing.
///
/// The primary entry points take an `input` and a function pointer `compute: fn(&I) -> Result`.
/// The key is derived from exactly that input, and a function pointer cannot capture anything
/// else, so a value can never be reused for an input that would have computed differently.
///
/// ```
/// use bytes::Bytes;
/// use warmcache_core::{BytesCodec, Cache};
///
/// fn expensive(input: &(String, u32)) -> Result<Bytes, std::io::Error> {
///     Ok(Bytes::from(input.0.repeat(input.1 as usize)))
/// }
///
/// let cache = Cache::builder("demo", BytesCodec).build();
/// let a = cache.get_or_compute(&("ab".to_owned(), 3), expensive)?;
/// let b = cache.get_or_compute(&("ab".to_owned(), 3), expensive)?;
/// assert_eq!(a, b);
/// assert_eq!(cache.stats().computes, 1);
/// # Ok::<(), warmcache_core::ComputeError>(())
/// ```
pub struct Cache<V, C> {
    prefix: KeyBuilder,
    producer: String,
    codec: C,
    live: Option<LiveCache<V>>,
    flights: SingleFlight<CacheKey, Outcome<V>>,
    tiers: Tiered,
    counters: CacheCounters,
}

impl<V, C> std::fmt::Debug for Cache<V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("tiers", &self.tiers)
            .finish_non_exhaustive()
    }
}

enum Lead<'a, V: Clone> {
    Ready(Outcome<V>),
    Guard(FlightGuard<'a, CacheKey, Outcome<V>>),
}

impl<V: Clone + Send + Sync + 'static, C: Codec<V>> Cache<V, C> {
    /// Starts building a cache whose keys live in `namespace` and whose values `codec` stores.
    pub fn builder(namespace: &str, codec: C) -> CacheBuilder<V, C> {
        CacheBuilder {
            namespace: namespace.to_owned(),
            version: 0,
            codec,
            live_capacity: 1024,
            live_weigh: None,
            tiers: None,
        }
    }

    /// The key [`get_or_compute`](Self::get_or_compute) uses for `input`.
    pub fn key_for<I: Hash + ?Sized>(&self, input: &I) -> CacheKey {
        self.prefix.clone().hash(input).finish()
    }

    /// A key builder with this cache's namespace, version and codec already written, for callers
    /// of the `*_vouched` methods who derive keys from several fields.
    pub fn key_builder(&self) -> KeyBuilder {
        self.prefix.clone()
    }

    /// The storage tiers.
    pub fn tiers(&self) -> &Tiered {
        &self.tiers
    }

    /// The value for `input`: from memory, from a storage tier, or by running `compute(input)`.
    ///
    /// Blocks the calling thread for storage reads and the computation. From async code use
    /// [`get_or_compute_async`](Self::get_or_compute_async).
    ///
    /// # Errors
    ///
    /// [`ComputeError`] when the computation fails or panics (for this caller or the one it
    /// waited on). Storage failures are never errors here.
    ///
    /// # Panics
    ///
    /// When this caller runs `compute` and it panics, the panic is resumed here after waiters
    /// have been released.
    pub fn get_or_compute<I, E>(&self, input: &I, compute: fn(&I) -> Result<V, E>) -> Outcome<V>
    where
        I: Hash + ?Sized,
        E: Into<BoxError>,
    {
        let key = self.key_for(input);
        self.get_or_compute_vouched(key, || compute(input))
    }

    /// [`get_or_compute`](Self::get_or_compute) for async callers: storage reads are awaited and
    /// waiting for another caller's computation does not block a thread. The computation itself
    /// runs inline on the polling task; move heavy work to a blocking pool inside `compute` if
    /// the executor needs that.
    ///
    /// # Cancellation
    ///
    /// Dropping the future while it waits is harmless. Dropping it while it leads a computation
    /// releases the waiters, one of which takes over.
    pub async fn get_or_compute_async<I, E>(
        &self,
        input: &I,
        compute: fn(&I) -> Result<V, E>,
    ) -> Outcome<V>
    where
        I: Hash + ?Sized,
        E: Into<BoxError>,
    {
        let key = self.key_for(input);
        self.get_or_compute_vouched_async(key, || compute(input))
            .await
    }

    /// Like [`get_or_compute`](Self::get_or_compute), with a key the caller derived and a closure.
    ///
    /// The caller vouches that `key` covers everything the closure's result depends on, including
    /// whatever it captures. Prefer [`get_or_compute`](Self::get_or_compute), where that holds by
    /// construction; use this when the input is fetched lazily (for example the code bytes are
    /// only loaded on a miss) and build the key with [`key_builder`](Self::key_builder).
    pub fn get_or_compute_vouched<E>(
        &self,
        key: CacheKey,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Outcome<V>
    where
        E: Into<BoxError>,
    {
        // One code path: the async version parks this thread while it waits for a leader.
        futures::executor::block_on(self.get_or_compute_vouched_async(key, compute))
    }

    /// [`get_or_compute_vouched`](Self::get_or_compute_vouched) for async callers.
    pub async fn get_or_compute_vouched_async<E>(
        &self,
        key: CacheKey,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Outcome<V>
    where
        E: Into<BoxError>,
    {
        if let Some(v) = self.live_get(&key) {
            return Ok(v);
        }
        let guard = loop {
            match self.flights.join(&key) {
                Join::Leader(guard) => break guard,
                Join::Waiter(waiter) => {
                    TierCounters::add(&self.counters.waits, 1);
                    match waiter.wait_async().await {
                        WaitOutcome::Done(outcome) => return outcome,
                        WaitOutcome::Panicked => return Err(ComputeError::Panicked { key }),
                        WaitOutcome::Abandoned => continue,
                    }
                }
            }
        };
        let guard = match self.lookup(&key, guard).await {
            Lead::Ready(outcome) => return outcome,
            Lead::Guard(guard) => guard,
        };
        let outcome = self.compute(&key, compute);
        self.finish(&key, guard, outcome).await
    }

    fn live_get(&self, key: &CacheKey) -> Option<V> {
        let v = self.live.as_ref()?.get(key)?;
        TierCounters::add(&self.counters.live_hits, 1);
        Some(v)
    }

    /// As leader: the live tier again (a previous leader may just have filled it), then storage.
    async fn lookup<'a>(
        &'a self,
        key: &CacheKey,
        guard: FlightGuard<'a, CacheKey, Outcome<V>>,
    ) -> Lead<'a, V> {
        if let Some(v) = self.live_get(key) {
            guard.complete(Ok(v.clone()));
            return Lead::Ready(Ok(v));
        }
        if let Some(v) = self.load(key).await {
            TierCounters::add(&self.counters.tier_hits, 1);
            if let Some(live) = &self.live {
                live.insert(*key, v.clone());
            }
            guard.complete(Ok(v.clone()));
            return Lead::Ready(Ok(v));
        }
        TierCounters::add(&self.counters.misses, 1);
        Lead::Guard(guard)
    }

    async fn load(&self, key: &CacheKey) -> Option<V> {
        let hit = self.tiers.get(key).await?;
        if hit.opened.meta.kind != self.codec.kind() {
            TierCounters::add(&self.counters.decode_errors, 1);
            tracing::warn!(%key, kind = hit.opened.meta.kind, "entry of another codec kind");
            self.tiers.delete(key).await;
            return None;
        }
        match self.codec.decode(hit.opened.payload) {
            Ok(v) => Some(v),
            Err(e) => {
                TierCounters::add(&self.counters.decode_errors, 1);
                tracing::warn!(%key, error = %e, "verified entry could not be decoded; recomputing");
                self.tiers.delete(key).await;
                None
            }
        }
    }

    fn compute<E: Into<BoxError>>(
        &self,
        key: &CacheKey,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Result<Outcome<V>, Box<dyn std::any::Any + Send>> {
        TierCounters::add(&self.counters.computes, 1);
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(compute));
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        TierCounters::add(&self.counters.compute_nanos, nanos);
        match result {
            Ok(Ok(v)) => Ok(Ok(v)),
            Ok(Err(e)) => {
                TierCounters::add(&self.counters.compute_errors, 1);
                let source: BoxError = e.into();
                Ok(Err(ComputeError::Failed {
                    key: *key,
                    source: Arc::from(source),
                }))
            }
            Err(panic) => {
                TierCounters::add(&self.counters.compute_panics, 1);
                Err(panic)
            }
        }
    }

    async fn finish(
        &self,
        key: &CacheKey,
        guard: FlightGuard<'_, CacheKey, Outcome<V>>,
        outcome: Result<Outcome<V>, Box<dyn std::any::Any + Send>>,
    ) -> Outcome<V> {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => {
                guard.complete(Err(ComputeError::Panicked { key: *key }));
                std::panic::resume_unwind(panic);
            }
        };
        if let Ok(v) = &outcome {
            if let Some(live) = &self.live {
                live.insert(*key, v.clone());
            }
            // Waiters need not wait for storage writes.
            guard.complete(outcome.clone());
            match self.codec.encode(v) {
                Ok(bytes) => {
                    self.tiers
                        .put(key, self.codec.kind(), &self.producer, &bytes)
                        .await
                }
                Err(e) => {
                    TierCounters::add(&self.counters.encode_errors, 1);
                    tracing::warn!(%key, error = %e, "value could not be encoded; not stored");
                }
            }
        } else {
            guard.complete(outcome.clone());
        }
        outcome
    }

    /// Removes `key` from the live tier and every writable storage tier.
    pub async fn invalidate(&self, key: &CacheKey) {
        if let Some(live) = &self.live {
            live.remove(key);
        }
        self.tiers.delete(key).await;
    }

    /// Drops every decoded value held in memory (storage tiers are untouched).
    pub fn clear_live(&self) {
        if let Some(live) = &self.live {
            live.clear();
        }
    }

    /// Blocks until background writes to slow tiers have finished. Call before exit.
    pub fn flush(&self) {
        self.tiers.flush();
    }

    /// A snapshot of the counters of the cache and of every tier.
    pub fn stats(&self) -> Stats {
        let live_entries = self.live.as_ref().map_or(0, |l| l.len() as u64);
        self.counters.snapshot(live_entries, self.tiers.stats())
    }
}
