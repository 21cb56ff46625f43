//! One request through the cache: live tier, single-flight, storage, computation.
//!
//! The rules, in the order a request meets them:
//!
//! 1. A live value the codec accepts for this caller is returned at once.
//! 2. Otherwise the request joins the key's flight. The first caller leads; the others wait.
//! 3. The leader looks again (live, then storage). On a miss it claims the key's leases in the
//!    tiers that coordinate with other processes and hosts ([`Tiered::claim`]); when someone
//!    else's computation stores the entry meanwhile, that entry is the value. Otherwise it
//!    produces the value.
//! 4. A produced value is put in the live tier and *published*: waiters, and callers that join
//!    from now on, receive it (or decode their own from its payload when the codec declines
//!    the value for them). The flight stays registered until the value has been written to the
//!    storage tiers, and only then ends, so no request in between computes it again.
//! 5. A failure of the computation is published like a value and shared; nothing is stored. A
//!    failure of the leader's own input ([`Failure::Input`]) ends the flight unpublished: the
//!    waiters join again and one of them leads with its own input.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;

use super::{Cache, ComputeError, Exec, Failure, Produced};
use crate::backend::maybe_spawn_blocking;
use crate::codec::Codec;
use crate::entry::Entry;
use crate::envelope::{EnvelopeMeta, FORMAT_VERSION, Origin};
use crate::key::CacheKey;
use crate::single_flight::FlightGuard;
use crate::tiered::{Claim, Claimed};

/// What a flight hands its waiters: the value, and the entry it was decoded from or encoded
/// to, for waiters the codec does not hand the value to.
#[derive(Clone)]
pub(super) struct Shared<V> {
    value: V,
    entry: Option<Entry>,
}

pub(super) type Flown<V> = Result<Shared<V>, ComputeError>;

pub(super) type Guard<'a, V> = FlightGuard<'a, CacheKey, Flown<V>>;

pub(super) fn add(counter: &crate::metrics::Count, n: u64) {
    counter.add(n);
}

pub(super) fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl<V, C> Cache<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    /// A waiter's value from the leader's result.
    pub(super) async fn adopt(
        &self,
        caller: &C::Caller,
        shared: Shared<V>,
        exec: Exec,
    ) -> Option<V> {
        if self.codec.accepts(caller, &shared.value) {
            return Some(shared.value);
        }
        let entry = shared.entry?;
        self.decode(caller, &entry, exec).await.ok()
    }

    /// Decodes `entry` for `caller`, on the blocking pool when asked and the codec blocks.
    async fn decode(
        &self,
        caller: &C::Caller,
        entry: &Entry,
        exec: Exec,
    ) -> Result<V, crate::BoxError> {
        add(&self.counters.decodes, 1);
        let result = if exec == Exec::Blocking && self.codec.blocking() {
            let (codec, caller, entry) = (self.codec.clone(), caller.clone(), entry.clone());
            maybe_spawn_blocking(move || codec.decode(&caller, &entry)).await
        } else {
            self.codec.decode(caller, entry)
        };
        if let Err(e) = &result {
            add(&self.counters.decode_errors, 1);
            tracing::warn!(
                key = %entry.meta().key,
                tier = ?entry.tier(),
                error = %e,
                "verified entry could not be decoded; computing it again"
            );
        }
        result
    }

    /// A stored entry for `key`, decoded for `caller`: `None` on a miss or when it does not
    /// decode (counted).
    pub(super) async fn load(
        &self,
        caller: &C::Caller,
        key: &CacheKey,
        exec: Exec,
    ) -> Option<(V, Entry)> {
        let started = Instant::now();
        let kind = self.codec.kind();
        let entry = if self.codec.prefers_files() {
            self.tiers.get_file(key, kind).await
        } else {
            self.tiers.get(key, kind).await
        }?;
        self.accept(caller, entry, exec, started).await
    }

    /// Decodes a verified stored `entry` for `caller` and counts the hit; `None` when it does
    /// not decode (counted).
    async fn accept(
        &self,
        caller: &C::Caller,
        entry: Entry,
        exec: Exec,
        started: Instant,
    ) -> Option<(V, Entry)> {
        let value = self.decode(caller, &entry, exec).await.ok()?;
        add(&self.counters.tier_hits, 1);
        if entry.file().is_some() {
            add(&self.counters.file_loads, 1);
        }
        self.counters.loaded(
            nanos(started),
            entry.meta().compute_ms.saturating_mul(1_000_000),
        );
        Some((value, entry))
    }

    /// As leader (or alone, without a guard): look again, claim, produce, publish and store.
    pub(super) async fn lead<X, F, Fut>(
        &self,
        caller: &C::Caller,
        key: CacheKey,
        exec: Exec,
        mut guard: Option<Guard<'_, V>>,
        produce: F,
    ) -> Result<V, Failure<X>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Produced<V>, Failure<X>>>,
    {
        if let Some(v) = self.look_again(caller, key, exec, &mut guard).await {
            return Ok(v);
        }
        let claim = match self.claim(caller, key, exec, &mut guard).await {
            Ok(claim) => claim,
            Err(found_or_refused) => return found_or_refused,
        };
        if let Some(remembered) = self.remembered_failure(&key).await {
            claim.release().await;
            add(&self.counters.remembered_failures, 1);
            publish(&mut guard, Err(remembered.clone()));
            return Err(Failure::Compute(remembered));
        }
        add(&self.counters.misses, 1);
        let started = Instant::now();
        // The one place a computation runs: a panic is caught, published, and resumed.
        let produced = AssertUnwindSafe(produce()).catch_unwind().await;
        let compute_nanos = nanos(started);
        let Produced {
            value,
            payload,
            inputs,
        } = match produced {
            Ok(Ok(produced)) => produced,
            Ok(Err(failure)) => {
                return Err(self
                    .failed(key, claim, &mut guard, failure, compute_nanos)
                    .await);
            }
            Err(panic) => {
                let panicked = Failure::Compute(ComputeError::Panicked { key });
                let _ = self
                    .failed::<X>(key, claim, &mut guard, panicked, compute_nanos)
                    .await;
                std::panic::resume_unwind(panic);
            }
        };
        self.count_compute(compute_nanos);
        let shared = |entry| {
            Ok(Shared {
                value: value.clone(),
                entry,
            })
        };
        self.store(
            key,
            Some(&value),
            payload,
            self.origin(compute_nanos / 1_000_000, inputs),
            claim,
            |entry| {
                publish(&mut guard, shared(entry));
            },
        )
        .await;
        // Only now can the value be found in storage: the flight ends here.
        drop(guard);
        Ok(value)
    }

    /// The leader's second look, live then storage: someone may have finished since it joined.
    async fn look_again(
        &self,
        caller: &C::Caller,
        key: CacheKey,
        exec: Exec,
        guard: &mut Option<Guard<'_, V>>,
    ) -> Option<V> {
        if let Some(v) = self.get_live(caller, &key) {
            let shared = Shared {
                value: v.clone(),
                entry: None,
            };
            publish(guard, Ok(shared));
            return Some(v);
        }
        let (v, entry) = self.load(caller, &key, exec).await?;
        Some(self.stored_hit(key, guard, v, entry))
    }

    /// The leases for computing `key`; `Err` with the result when another process or host
    /// stored the entry meanwhile, or when this stack may not compute it.
    async fn claim<X>(
        &self,
        caller: &C::Caller,
        key: CacheKey,
        exec: Exec,
        guard: &mut Option<Guard<'_, V>>,
    ) -> Result<Claim, Result<V, Failure<X>>> {
        let waited = Instant::now();
        let found = match self
            .tiers
            .claim(&key, self.codec.kind(), self.codec.prefers_files())
            .await
        {
            Claimed::Found(entry) => entry,
            Claimed::Compute(claim) => return Ok(claim),
            Claimed::Refused(tiers) => {
                let e = ComputeError::Refused { key, tiers };
                publish(guard, Err(e.clone()));
                return Err(Err(Failure::Compute(e)));
            }
        };
        match self.accept(caller, found, exec, waited).await {
            Some((v, entry)) => {
                add(&self.counters.coordinated, 1);
                Err(Ok(self.stored_hit(key, guard, v, entry)))
            }
            None => Ok(Claim::none()),
        }
    }

    /// A computation that produced no value: its leases released, counted, and published to
    /// the waiters, except the leader's own input failure, which is neither counted as a
    /// computation nor shared (dropping the guard unpublished lets a waiter lead with its own
    /// input).
    async fn failed<X>(
        &self,
        key: CacheKey,
        claim: Claim,
        guard: &mut Option<Guard<'_, V>>,
        failure: Failure<X>,
        compute_nanos: u64,
    ) -> Failure<X> {
        if let Failure::Compute(e) = &failure {
            // Before the leases go: whoever waited on them finds the failure.
            self.remember_failure(&key, e).await;
        }
        claim.release().await;
        if let Failure::Compute(e) = &failure {
            self.count_compute(compute_nanos);
            if matches!(e, ComputeError::Panicked { .. }) {
                add(&self.counters.compute_panics, 1);
            } else {
                add(&self.counters.compute_errors, 1);
            }
            publish(guard, Err(e.clone()));
        }
        failure
    }

    /// The one path a value takes into storage: its payload (given, or encoded from `value`;
    /// a failed encoding is counted and stores nothing), `value` into the live tier, `publish`
    /// called with the entry waiters decode from, then the payload written to every writable
    /// tier, each of `claim`'s leases released once its tier's write has landed.
    pub(super) async fn store(
        &self,
        key: CacheKey,
        value: Option<&V>,
        payload: Option<Bytes>,
        origin: Origin,
        claim: Claim,
        publish: impl FnOnce(Option<Entry>),
    ) {
        let payload = match (payload, value) {
            (Some(payload), _) => Some(payload),
            // Nowhere to store it: values that cannot be encoded (prepared instances) use a
            // cache without tiers, and are never asked to.
            (None, _) if self.tiers.is_empty() => None,
            (None, Some(value)) => match self.codec.encode(value) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    add(&self.counters.encode_errors, 1);
                    tracing::warn!(%key, error = %e, "value could not be encoded; not stored");
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(value) = value {
            self.live_insert(key, value);
        }
        publish(
            payload
                .as_ref()
                .map(|p| fresh_entry(&key, &origin, p.clone())),
        );
        match payload {
            Some(payload) => self.tiers.put_claimed(&key, &origin, &payload, claim).await,
            None => claim.release().await,
        }
    }

    /// The origin of a value of this cache's codec computed in `compute_ms` from `inputs`.
    pub(super) fn origin(&self, compute_ms: u64, inputs: String) -> Origin {
        Origin::new(self.codec.kind(), self.producer.clone())
            .compute_ms(compute_ms)
            .inputs(inputs)
    }

    /// A value decoded from a stored entry: into the live tier, and to the flight's waiters.
    fn stored_hit(&self, key: CacheKey, guard: &mut Option<Guard<'_, V>>, v: V, entry: Entry) -> V {
        self.live_insert(key, &v);
        publish(
            guard,
            Ok(Shared {
                value: v.clone(),
                entry: Some(entry),
            }),
        );
        v
    }

    pub(super) fn count_compute(&self, nanos: u64) {
        self.counters.computed(nanos);
    }

    pub(super) fn live_insert(&self, key: CacheKey, value: &V) {
        if let Some(live) = &self.live {
            live.insert(key, value.clone());
        }
    }
}

fn publish<V: Clone>(guard: &mut Option<Guard<'_, V>>, outcome: Flown<V>) {
    if let Some(guard) = guard {
        guard.publish(outcome);
    }
}

/// The entry a computation just produced, as a decoder will see it once stored.
pub(super) fn fresh_entry(key: &CacheKey, origin: &Origin, payload: Bytes) -> Entry {
    let len = payload.len() as u64;
    Entry::from_bytes(
        EnvelopeMeta {
            version: FORMAT_VERSION,
            kind: origin.kind,
            key: *key,
            payload_len: len,
            decoded_len: len,
            compressed: false,
            created_ms: 0,
            compute_ms: origin.compute_ms,
            producer: origin.producer.clone(),
            inputs: origin.inputs.clone(),
            keyed: false,
            signer: None,
            by_previous_key: false,
        },
        payload,
    )
}
