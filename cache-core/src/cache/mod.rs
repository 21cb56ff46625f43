//! The cache front: live decoded values, single-flight, codec and tiers. The one front of
//! warmcache: the wasmtime module, component and incremental caches are adapters over it.
//!
//! This file holds the front's public methods; `flight.rs` the request algorithm behind them
//! (when a flight ends, what waiters inherit, the one path that stores a value), `live.rs`
//! the in-process tier, `failures.rs` remembered failures.

mod failures;
mod flight;
mod live;

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::Codec;
use crate::error::BoxError;
use crate::key::{CacheKey, KeyBuilder, Namespace};
use crate::single_flight::{Join, SingleFlight, WaitOutcome};
use crate::stats::{CacheCounters, Stats};
use crate::tiered::{Claim, Tiered};

pub use failures::FAILURE_KIND;
use flight::{Flown, add};
use live::{Bound, Live};

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
    /// Nothing was computed: the stack's signed tiers have no entry for the key, it cannot
    /// write them, and it is set never to compute what they lack
    /// ([`OnSharedMiss::Fail`](crate::OnSharedMiss::Fail)).
    #[error(
        "no entry for key {key} signed by a trusted key in {}, and this cache is set never to \
         compute what its signed tiers lack (precompile it with a producer's signing key, or \
         allow computing on a shared miss)",
        tiers.join(", ")
    )]
    Refused {
        /// The key asked for.
        key: CacheKey,
        /// The signed tiers that lacked it.
        tiers: Vec<String>,
    },
    /// Nothing was computed: the same computation failed a short while ago, here or in a
    /// process sharing a tier, and its failure is remembered
    /// ([`CacheBuilder::remember_failures`]).
    #[error(
        "computing the value for key {key} failed {age:.0?} ago (a remembered failure): {message}"
    )]
    Remembered {
        /// The key asked for.
        key: CacheKey,
        /// The failure's message, as it was when the computation failed.
        message: String,
        /// How long ago the computation failed.
        age: Duration,
    },
}

impl ComputeError {
    /// A failed computation of `key` with `source` as its error.
    pub fn failed(key: CacheKey, source: impl Into<BoxError>) -> Self {
        ComputeError::Failed {
            key,
            source: Arc::from(source.into()),
        }
    }

    /// The computation's error as `E`, when it failed with one.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            ComputeError::Failed { source, .. } => source.downcast_ref::<E>(),
            ComputeError::Panicked { .. }
            | ComputeError::Refused { .. }
            | ComputeError::Remembered { .. } => None,
        }
    }
}

type Outcome<V> = Result<V, ComputeError>;

/// Why a request through [`Cache::get_or_produce`] returned no value.
#[derive(Debug, Clone)]
pub enum Failure<X> {
    /// The computation failed or panicked; every caller waiting on it received the same error.
    Compute(ComputeError),
    /// This caller's own input could not be had (its loader failed, its bytes did not match
    /// the key). Not shared: callers waiting on this one go on with their own input.
    Input(X),
}

/// What an adapter's computation produced: the value, optionally the payload to store, and
/// what its key was derived from. Without a payload the cache encodes the value with its codec.
#[derive(Debug, Clone)]
pub struct Produced<V> {
    /// The value handed to the caller.
    pub value: V,
    /// The bytes to store (the codec's encoding of `value`), when the computation has them.
    pub payload: Option<Bytes>,
    /// What the key was derived from, as `name=value` lines, recorded in the stored entry
    /// ([`Origin::inputs`](crate::Origin::inputs)) so a miss elsewhere can be explained; empty
    /// records nothing.
    pub inputs: String,
}

impl<V> Produced<V> {
    /// `value`, with `payload` to store (or `None`: encoded by the codec) and no inputs.
    pub fn new(value: V, payload: Option<Bytes>) -> Self {
        Self {
            value,
            payload,
            inputs: String::new(),
        }
    }

    /// Records what the key was derived from (see [`inputs`](Self::inputs)).
    pub fn inputs(mut self, inputs: impl Into<String>) -> Self {
        self.inputs = inputs.into();
        self
    }
}

/// Where a request decodes entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// On the calling thread (the synchronous API).
    Inline,
    /// On Tokio's blocking pool when a runtime is current and the codec
    /// [blocks](Codec::blocking) (async callers), so executor threads are not held.
    Blocking,
}

/// Builds a [`Cache`]. Start with [`Cache::builder`].
pub struct CacheBuilder<V, C> {
    namespace: String,
    version: u32,
    codec: C,
    live: Bound<V>,
    tiers: Option<Tiered>,
    remember_failures: Option<Duration>,
    failure_context: Vec<u8>,
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
        self.live = Bound::Count(count);
        self
    }

    /// Keeps decoded values in memory up to a total `capacity` as measured by `weigh` (0
    /// disables the live tier). A value weighing more than the capacity is not kept.
    pub fn live_weighted(mut self, capacity: u64, weigh: fn(&V) -> u64) -> Self {
        self.live = Bound::Weight(capacity, weigh);
        self
    }

    /// The storage tiers (default: none, only the live tier).
    pub fn tiers(mut self, tiers: Tiered) -> Self {
        self.tiers = Some(tiers);
        self
    }

    /// Remembers a computation's failure ([`ComputeError::Failed`]) for `lifetime` in every
    /// writable storage tier (an entry of kind [`FAILURE_KIND`], sealed like any other), so the
    /// next request for the key in any process sharing a tier gets
    /// [`ComputeError::Remembered`] at once instead of computing again (default: not
    /// remembered). For computations that fail the same way every time, such as compiling
    /// invalid code; keep the lifetime short where a failure may be passing (a resource
    /// limit). Removing the key's entries, or clearing the tiers, forgets it.
    pub fn remember_failures(mut self, lifetime: Duration) -> Self {
        self.remember_failures = Some(lifetime).filter(|l| !l.is_zero());
        self
    }

    /// What a computation's failure depends on beside its key, such as the limits it ran under
    /// (default: nothing): a failure remembered under another context is not used, so a failure
    /// under a short time limit is not taken for one under a longer limit.
    pub fn failure_context(mut self, context: impl Into<Vec<u8>>) -> Self {
        self.failure_context = context.into();
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Cache<V, C> {
        let namespace = Namespace::new(&self.namespace);
        let mut prefix = namespace.builder();
        prefix.integer(self.version).integer(self.codec.kind());
        Cache {
            prefix,
            producer: self.codec.producer(),
            codec: self.codec,
            live: Live::new(self.live),
            flights: SingleFlight::new(),
            tiers: self.tiers.unwrap_or_else(|| Tiered::builder().build()),
            counters: CacheCounters::new(&self.namespace),
            remember_failures: self.remember_failures,
            failure_context: self.failure_context,
        }
    }
}

/// A cache of computed values over a [`Tiered`] storage stack.
///
/// Lookups go live tier (decoded values in memory), then the storage tiers (verified, decoded,
/// promoted), then the computation. Concurrent requests for one key run one computation
/// (single-flight); requests for other keys never wait on it. A flight ends only once its value
/// can be found in the live tier or storage, so no request computes it twice. A computation that
/// fails or panics releases its waiters with its error and caches nothing.
///
/// The primary entry points take an `input` and a function pointer `compute: fn(&I) -> Result`.
/// The key is derived from exactly that input, and a function pointer cannot capture anything
/// else, so a value can never be reused for an input that would have computed differently.
///
/// What differs between kinds of values is the [`Codec`]; adapters such as the wasmtime module
/// cache bring their own and call [`get_or_produce`](Self::get_or_produce).
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
pub struct Cache<V: Clone, C> {
    prefix: KeyBuilder,
    producer: String,
    codec: C,
    live: Option<Live<V>>,
    flights: SingleFlight<CacheKey, Flown<V>>,
    tiers: Tiered,
    counters: CacheCounters,
    /// How long a failed computation is remembered ([`CacheBuilder::remember_failures`]).
    remember_failures: Option<Duration>,
    /// What a failure depends on beside its key ([`CacheBuilder::failure_context`]).
    failure_context: Vec<u8>,
}

impl<V: Clone, C> std::fmt::Debug for Cache<V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("tiers", &self.tiers)
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static, C: Codec<V>> Cache<V, C> {
    /// Starts building a cache whose keys live in `namespace` and whose values `codec` stores.
    pub fn builder(namespace: &str, codec: C) -> CacheBuilder<V, C> {
        CacheBuilder {
            namespace: namespace.to_owned(),
            version: 0,
            codec,
            live: Bound::Count(1024),
            tiers: None,
            remember_failures: None,
            failure_context: Vec::new(),
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

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The value for `key` as `caller` needs it: from the live tier, from storage, or by
    /// running `produce`, with single-flight. The entry point for adapters that bring their
    /// own [`Codec`]; `produce` says which of its failures are the computation's (shared with
    /// waiters) and which are this caller's own input's ([`Failure`]).
    ///
    /// The caller vouches that `key` covers everything the result depends on.
    ///
    /// # Errors
    ///
    /// The computation's failure (this caller's or the one it waited on), or this caller's
    /// input failure. Storage failures are never errors here.
    ///
    /// # Cancellation
    ///
    /// Dropping the future while it waits is harmless. Dropping it while it leads releases the
    /// waiters, one of which takes over.
    pub async fn get_or_produce<X, F, Fut>(
        &self,
        caller: &C::Caller,
        key: CacheKey,
        exec: Exec,
        produce: F,
    ) -> Result<V, Failure<X>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Produced<V>, Failure<X>>>,
    {
        if let Some(v) = self.get_live(caller, &key) {
            return Ok(v);
        }
        let guard = loop {
            match self.flights.join(&key) {
                Join::Leader(guard) => break Some(guard),
                Join::Waiter(waiter) => {
                    add(&self.counters.waits, 1);
                    match waiter.wait_async().await {
                        WaitOutcome::Done(Ok(shared)) => {
                            match self.adopt(caller, shared, exec).await {
                                Some(v) => return Ok(v),
                                // The value is not for this caller and its entry could not
                                // be decoded for it: go on alone, outside the flight.
                                None => break None,
                            }
                        }
                        WaitOutcome::Done(Err(e)) => return Err(Failure::Compute(e)),
                        WaitOutcome::Panicked => {
                            return Err(Failure::Compute(ComputeError::Panicked { key }));
                        }
                        WaitOutcome::Abandoned => continue,
                    }
                }
            }
        };
        self.lead(caller, key, exec, guard, produce).await
    }

    /// The value for `key` in the live tier, if there is one and the codec hands it to
    /// `caller`; counted as a live hit. Never blocks: synchronous entry points try it before
    /// entering an executor.
    pub fn get_live(&self, caller: &C::Caller, key: &CacheKey) -> Option<V> {
        let v = self.live.as_ref()?.get(key)?;
        if !self.codec.accepts(caller, &v) {
            return None;
        }
        add(&self.counters.live_hits, 1);
        Some(v)
    }

    /// The value for `key` from the live tier or storage, without computing anything on a
    /// miss and without joining a flight.
    pub async fn lookup(&self, caller: &C::Caller, key: &CacheKey, exec: Exec) -> Option<V> {
        if let Some(v) = self.get_live(caller, key) {
            return Some(v);
        }
        match self.load(caller, key, exec).await {
            Some((v, _)) => {
                self.live_insert(*key, &v);
                Some(v)
            }
            None => {
                self.counters.misses.add(1);
                None
            }
        }
    }

    /// Stores `value` under `key` (live tier and every writable storage tier) without a
    /// computation, for callers that are handed values to keep (such as Cranelift's
    /// incremental cache). The caller vouches for the key.
    pub async fn insert(&self, key: CacheKey, value: V) {
        self.counters.inserts.add(1);
        self.store(
            key,
            Some(&value),
            None,
            self.origin(0, String::new()),
            Claim::none(),
            drop,
        )
        .await;
    }

    /// Runs `compute` outside any flight, counts it as a computation (its time, and whether it
    /// failed), and stores the payload it returns in every writable storage tier, without
    /// decoding it. For callers that fill storage for others, such as a cross-compiling
    /// precompile whose artifacts this process cannot load. Returns the payload and how long
    /// computing took.
    ///
    /// # Errors
    ///
    /// `compute`'s error; nothing is stored then.
    pub async fn compute_and_store<E>(
        &self,
        key: CacheKey,
        inputs: impl Into<String>,
        compute: impl Future<Output = Result<Bytes, E>>,
    ) -> Result<(Bytes, std::time::Duration), E> {
        let started = Instant::now();
        let result = compute.await;
        let took = started.elapsed();
        self.count_compute(flight::nanos(started));
        let payload = result.inspect_err(|_| self.counters.compute_errors.add(1))?;
        let compute_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.store(
            key,
            None,
            Some(payload.clone()),
            self.origin(compute_ms, inputs.into()),
            Claim::none(),
            drop,
        )
        .await;
        Ok((payload, took))
    }

    /// Removes `key` from the live tier and every writable storage tier.
    pub async fn invalidate(&self, key: &CacheKey) {
        if let Some(live) = &self.live {
            live.remove(key);
        }
        self.tiers.delete(key).await;
    }

    /// Removes `key` from the live tier and every writable storage tier no one else writes
    /// ([`Tiered::delete_private`]): for a value superseded by another, which others may still
    /// be reading from a shared tier until its eviction takes it.
    pub async fn invalidate_private(&self, key: &CacheKey) {
        if let Some(live) = &self.live {
            live.remove(key);
        }
        self.tiers.delete_private(key).await;
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
        let live_entries = self.live.as_ref().map_or(0, Live::len);
        self.counters.snapshot(live_entries, self.tiers.stats())
    }
}

impl<V, C> Cache<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Codec<V, Caller = ()>,
{
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
        if let Some(v) = self.get_live(&(), &key) {
            return Ok(v);
        }
        // One code path: the async version parks this thread while it waits for a leader.
        futures::executor::block_on(self.vouched(key, Exec::Inline, compute))
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
        self.vouched(key, Exec::Blocking, compute).await
    }

    async fn vouched<E>(
        &self,
        key: CacheKey,
        exec: Exec,
        compute: impl FnOnce() -> Result<V, E>,
    ) -> Outcome<V>
    where
        E: Into<BoxError>,
    {
        let produce = || async move {
            compute()
                .map(|value| Produced::new(value, None))
                .map_err(|e| {
                    Failure::<std::convert::Infallible>::Compute(ComputeError::failed(key, e))
                })
        };
        match self.get_or_produce(&(), key, exec, produce).await {
            Ok(v) => Ok(v),
            Err(Failure::Compute(e)) => Err(e),
            Err(Failure::Input(never)) => match never {},
        }
    }
}
