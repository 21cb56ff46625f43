//! A tier's configuration ([`Tier`]) and the state behind it: the backend under its timeout,
//! counters and circuit breaker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{Either, select};

use crate::backend::Backend;
use crate::breaker::Breaker;
use crate::envelope::Compression;
use crate::error::{Error, ErrorKind};
use crate::key::CacheKey;
use crate::stats::TierCounters;

use super::writer::{Job, Writer};

/// Whether a tier takes writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read, written on put and promotion, and cleaned of bad entries.
    ReadWrite,
    /// Only read: never written, and bad entries are skipped, not deleted.
    ReadOnly,
}

/// How writes reach a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The caller's put (or get, for promotion) waits for the write.
    Inline,
    /// Writes go through a bounded queue to a worker thread; [`Tiered::flush`](super::Tiered::flush)
    /// waits for them. When the queue is full a write is dropped and counted in
    /// [`TierStats::dropped_writes`](crate::TierStats::dropped_writes), never silently.
    Background {
        /// Queue length.
        queue: usize,
    },
}

/// One tier: a backend and its policy. Build with [`Tier::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Tier {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) name: Option<String>,
    pub(super) access: Access,
    pub(super) write: WriteMode,
    pub(super) timeout: Option<Duration>,
    pub(super) breaker_threshold: u32,
    pub(super) breaker_cooldown: Duration,
    pub(super) compression: Compression,
}

impl Tier {
    /// A read-write tier with inline writes, no timeout, and a circuit breaker that opens after 5
    /// consecutive failures for 30 seconds.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            name: None,
            access: Access::ReadWrite,
            write: WriteMode::Inline,
            timeout: None,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            compression: Compression::None,
        }
    }

    /// Stores entries in this tier compressed (default: uncompressed). The envelope records it
    /// and its tag covers the compressed bytes, so nothing is decompressed before it verifies.
    /// Worth it for tiers where bytes cost more than CPU, such as a remote bucket.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Names the tier in stats (default: its position and backend name, such as `"1:redb"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Never writes to this tier.
    pub fn read_only(mut self) -> Self {
        self.access = Access::ReadOnly;
        self
    }

    /// Writes through a background queue of `queue` entries (for slow or remote tiers).
    pub fn background(mut self, queue: usize) -> Self {
        self.write = WriteMode::Background {
            queue: queue.max(1),
        };
        self
    }

    /// Bounds every operation on this tier; one that runs longer counts as a failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Opens the circuit breaker after `threshold` consecutive failures, for `cooldown`.
    pub fn circuit_breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold.max(1);
        self.breaker_cooldown = cooldown;
        self
    }
}

/// State shared between a tier and its background worker.
#[derive(Debug)]
pub(super) struct TierShared {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) name: String,
    pub(super) timeout: Option<Duration>,
    pub(super) counters: TierCounters,
    pub(super) breaker: Breaker,
}

#[derive(Debug)]
pub(super) enum TierFailure {
    Error(Error),
    Timeout(Duration),
}

/// Runs `fut` under `timeout`, if any.
pub(super) async fn timed<T>(
    timeout: Option<Duration>,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, TierFailure> {
    let Some(limit) = timeout else {
        return fut.await.map_err(TierFailure::Error);
    };
    let fut = std::pin::pin!(fut);
    match select(fut, futures_timer::Delay::new(limit)).await {
        Either::Left((result, _)) => result.map_err(TierFailure::Error),
        Either::Right(((), _)) => Err(TierFailure::Timeout(limit)),
    }
}

impl TierShared {
    /// Records a failed operation: timeout counter, breaker, log.
    pub(super) fn record_failure(&self, failure: &TierFailure, op: &str, key: &CacheKey) {
        match failure {
            TierFailure::Timeout(after) => {
                TierCounters::add(&self.counters.timeouts, 1);
                self.breaker.failure();
                tracing::warn!(tier = %self.name, %key, ?after, "{op} timed out");
            }
            TierFailure::Error(e) => {
                // A refused value says nothing about the tier's health.
                if !matches!(e.kind(), ErrorKind::Capacity | ErrorKind::NotSupported) {
                    self.breaker.failure();
                }
                tracing::warn!(tier = %self.name, %key, error = %e, "{op} failed");
            }
        }
    }

    /// Writes `value` under the breaker and timeout; returns whether the write landed.
    pub(super) async fn put(&self, key: &CacheKey, value: Bytes) -> bool {
        if !self.breaker.allow() {
            TierCounters::add(&self.counters.skipped, 1);
            return false;
        }
        let len = value.len() as u64;
        match timed(self.timeout, self.backend.put(key, value)).await {
            Ok(()) => {
                self.breaker.success();
                TierCounters::add(&self.counters.writes, 1);
                TierCounters::add(&self.counters.bytes_written, len);
                true
            }
            Err(failure) => {
                TierCounters::add(&self.counters.write_errors, 1);
                self.record_failure(&failure, "put", key);
                false
            }
        }
    }

    pub(super) async fn delete(&self, key: &CacheKey) {
        if !self.breaker.allow() {
            TierCounters::add(&self.counters.skipped, 1);
            return;
        }
        match timed(self.timeout, self.backend.delete(key)).await {
            Ok(()) => self.breaker.success(),
            Err(failure) => {
                TierCounters::add(&self.counters.write_errors, 1);
                self.record_failure(&failure, "delete", key);
            }
        }
    }

    pub(super) fn run_job(&self, job: Job) {
        match job {
            Job::Put(key, value) => {
                futures::executor::block_on(self.put(&key, value));
            }
            Job::Delete(key) => futures::executor::block_on(self.delete(&key)),
        }
    }
}

/// A tier as built into a [`Tiered`](super::Tiered).
#[derive(Debug)]
pub(super) struct TierState {
    pub(super) shared: Arc<TierShared>,
    pub(super) access: Access,
    pub(super) compression: Compression,
    pub(super) writer: Option<Writer>,
}

impl TierState {
    pub(super) fn writable(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// Writes inline or enqueues; returns once the write is done or queued.
    pub(super) async fn write(&self, key: &CacheKey, value: Bytes) {
        match &self.writer {
            Some(writer) => writer.enqueue(&self.shared, Job::Put(*key, value)),
            None => {
                self.shared.put(key, value).await;
            }
        }
    }

    pub(super) async fn remove(&self, key: &CacheKey) {
        match &self.writer {
            Some(writer) => writer.enqueue(&self.shared, Job::Delete(*key)),
            None => self.shared.delete(key).await,
        }
    }

    pub(super) fn pending(&self) -> u64 {
        self.writer.as_ref().map_or(0, Writer::pending)
    }
}
