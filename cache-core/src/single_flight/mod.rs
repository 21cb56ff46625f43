//! The single-flight table: concurrent requests for one key run one computation.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::sync::{Arc, Mutex, lock};

#[cfg(all(test, feature = "shuttle"))]
mod model_check;

const SHARDS: usize = 16;

/// A table of computations in flight, one per key.
///
/// [`join`](Self::join) makes the first caller for a key the leader, holding a [`FlightGuard`];
/// later callers get a [`Waiter`] that resolves when the leader publishes an outcome. The guard
/// is RAII:
///
/// * [`FlightGuard::publish`] hands every waiter, and every caller that joins from then on, a
///   clone of the outcome (a value or an error: failures are shared, not retried by each
///   waiter), while the flight stays in the table. The leader publishes as soon as it has a
///   value and keeps the flight until the value can be found elsewhere (stored in a tier), so
///   no request in between starts the computation again.
/// * [`FlightGuard::complete`] publishes and ends the flight;
/// * dropped unpublished during a panic, waiters see [`WaitOutcome::Panicked`];
/// * dropped unpublished otherwise (a cancelled future, or a leader that gave up on its own
///   input), waiters see [`WaitOutcome::Abandoned`] and [`join`](Self::join) again, so one of
///   them takes over.
///
/// Either way the key leaves the table when the guard goes, so no key is ever stuck. Keys hash
/// to one of 16 shards; requests for other keys never wait on a computation, only on a shard
/// lock held for a map lookup. No user code runs under a lock.
pub(crate) struct SingleFlight<K, T> {
    shards: Box<[Shard<K, T>]>,
}

type Shard<K, T> = Mutex<HashMap<K, Arc<Flight<T>>>>;

struct Flight<T> {
    state: Mutex<FlightState<T>>,
}

struct FlightState<T> {
    outcome: Option<WaitOutcome<T>>,
    wakers: Vec<(u64, Waker)>,
    next_waker: u64,
}

/// How a flight ended, as seen by a waiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitOutcome<T> {
    /// The leader completed with this outcome.
    Done(T),
    /// The leader panicked.
    Panicked,
    /// The leader gave up without an outcome (its future was dropped); join again.
    Abandoned,
}

/// The result of [`SingleFlight::join`].
pub(crate) enum Join<'a, K: Hash + Eq + Clone, T: Clone> {
    /// This caller runs the computation.
    Leader(FlightGuard<'a, K, T>),
    /// Another caller is running it.
    Waiter(Waiter<T>),
}

/// Held by the leader of a flight. See [`SingleFlight`].
pub(crate) struct FlightGuard<'a, K: Hash + Eq + Clone, T: Clone> {
    table: &'a SingleFlight<K, T>,
    key: K,
    flight: Arc<Flight<T>>,
    published: bool,
}

/// Waits for another caller's flight. Blocking ([`wait`](Self::wait)) or async
/// ([`wait_async`](Self::wait_async)); the async wait is cancel-safe.
pub(crate) struct Waiter<T> {
    flight: Arc<Flight<T>>,
}

impl<K: Hash + Eq + Clone, T: Clone> Default for SingleFlight<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone, T: Clone> SingleFlight<K, T> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K, T> {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        &self.shards[(hash as usize) % SHARDS]
    }

    /// Becomes the leader for `key`, or a waiter on the flight already running.
    pub(crate) fn join(&self, key: &K) -> Join<'_, K, T> {
        let mut map = lock(self.shard(key));
        if let Some(flight) = map.get(key) {
            return Join::Waiter(Waiter {
                flight: Arc::clone(flight),
            });
        }
        let flight = Arc::new(Flight {
            state: Mutex::new(FlightState {
                outcome: None,
                wakers: Vec::new(),
                next_waker: 0,
            }),
        });
        map.insert(key.clone(), Arc::clone(&flight));
        Join::Leader(FlightGuard {
            table: self,
            key: key.clone(),
            flight,
            published: false,
        })
    }

    /// Number of flights running.
    #[cfg(all(test, feature = "shuttle"))]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

impl<K: Hash + Eq + Clone, T: Clone> FlightGuard<'_, K, T> {
    /// Hands `outcome` to every waiter and to every caller that joins until the guard is
    /// dropped. A second publish is ignored.
    pub(crate) fn publish(&mut self, outcome: T) {
        if !self.published {
            self.set(WaitOutcome::Done(outcome));
            self.published = true;
        }
    }

    /// Publishes `outcome` and ends the flight.
    #[cfg(all(test, feature = "shuttle"))]
    pub(crate) fn complete(mut self, outcome: T) {
        self.publish(outcome);
    }

    fn set(&self, outcome: WaitOutcome<T>) {
        let wakers = {
            let mut state = lock(&self.flight.state);
            state.outcome = Some(outcome);
            std::mem::take(&mut state.wakers)
        };
        for (_, waker) in wakers {
            waker.wake();
        }
    }
}

impl<K: Hash + Eq + Clone, T: Clone> Drop for FlightGuard<'_, K, T> {
    fn drop(&mut self) {
        if !self.published {
            let outcome = if std::thread::panicking() {
                WaitOutcome::Panicked
            } else {
                WaitOutcome::Abandoned
            };
            self.set(outcome);
        }
        let mut map = lock(self.table.shard(&self.key));
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

impl<T: Clone> Waiter<T> {
    /// Waits asynchronously until the flight ends. Dropping the future stops waiting and leaves
    /// the flight undisturbed.
    pub(crate) fn wait_async(self) -> WaitFuture<T> {
        WaitFuture {
            flight: self.flight,
            waker_id: None,
        }
    }
}

/// Future returned by [`Waiter::wait_async`].
pub(crate) struct WaitFuture<T> {
    flight: Arc<Flight<T>>,
    waker_id: Option<u64>,
}

impl<T: Clone> Future for WaitFuture<T> {
    type Output = WaitOutcome<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = lock(&this.flight.state);
        if let Some(outcome) = &state.outcome {
            return Poll::Ready(outcome.clone());
        }
        match this.waker_id {
            Some(id) => {
                if let Some((_, w)) = state.wakers.iter_mut().find(|(i, _)| *i == id) {
                    w.clone_from(cx.waker());
                }
            }
            None => {
                let id = state.next_waker;
                state.next_waker += 1;
                state.wakers.push((id, cx.waker().clone()));
                this.waker_id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for WaitFuture<T> {
    fn drop(&mut self) {
        if let Some(id) = self.waker_id {
            let mut state = lock(&self.flight.state);
            state.wakers.retain(|(i, _)| *i != id);
        }
    }
}

impl<K, T> std::fmt::Debug for SingleFlight<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Waiter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for WaitFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitFuture").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, T: Clone> std::fmt::Debug for FlightGuard<'_, K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightGuard").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, T: Clone> std::fmt::Debug for Join<'_, K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Join::Leader(_) => f.write_str("Join::Leader"),
            Join::Waiter(_) => f.write_str("Join::Waiter"),
        }
    }
}
