//! A tier's backend under its guards: every operation on it runs through [`TierShared::guarded`],
//! which applies the breaker of its side, the timeout, and the counting and logging of failures,
//! so those rules are written once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{Either, select};

use crate::backend::Backend;
use crate::breaker::Breaker;
use crate::error::{Error, ErrorKind};
use crate::key::CacheKey;
use crate::stats::TierCounters;

/// State shared between a tier and its background worker.
#[derive(Debug)]
pub(super) struct TierShared {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) name: String,
    pub(super) timeout: Option<Duration>,
    pub(super) min_write_rate: u64,
    pub(super) verified_files: Option<Arc<crate::files::VerifiedFiles>>,
    /// Load entry files from sealed copies ([`Tier::sealed_copies`](super::Tier::sealed_copies)).
    pub(super) sealed_copies: bool,
    pub(super) counters: TierCounters,
    /// Health of `get` and `open_file`.
    pub(super) read_breaker: Breaker,
    /// Health of `put`, `delete` and leases.
    pub(super) write_breaker: Breaker,
}

#[derive(Debug)]
pub(super) enum TierFailure {
    Error(Error),
    Timeout(Duration),
}

/// The side of a tier an operation is on, which decides its breaker and what its failure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// `get` and `open_file`: the read breaker; failures count as read errors, latency is
    /// recorded, and an operation the backend does not offer is reported, not counted.
    Read,
    /// `put` and `delete`: the write breaker; failures count as write errors.
    Write,
    /// Taking a lease: allowed by the write breaker but never counted against it (a lease is
    /// coordination, not a write, and one key's lease can fail for reasons that say nothing
    /// about the tier, such as a lock file planted by someone else); failures count as lease
    /// errors.
    Lease,
}

/// Why a guarded operation gave nothing.
#[derive(Debug)]
pub(super) enum Refused {
    /// The breaker of its side is open: not attempted, counted as a skip.
    Skipped,
    /// A read the backend does not offer (for example `open_file`): not counted.
    NotSupported,
    /// It failed or timed out: counted and logged.
    Failed,
}

/// Runs `fut` under `timeout`, if any. Blocking backends run off the caller's thread only when
/// there is a timeout to enforce (see [`maybe_spawn_blocking`](crate::backend::maybe_spawn_blocking)).
pub(super) async fn timed<T>(
    timeout: Option<Duration>,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, TierFailure> {
    let Some(limit) = timeout else {
        return crate::backend::inline_allowed(fut)
            .await
            .map_err(TierFailure::Error);
    };
    let fut = std::pin::pin!(fut);
    match select(fut, futures_timer::Delay::new(limit)).await {
        Either::Left((result, _)) => result.map_err(TierFailure::Error),
        Either::Right(((), _)) => Err(TierFailure::Timeout(limit)),
    }
}

impl TierShared {
    /// Runs `op` (named `name` in logs) on `side` of this tier, within `limit`: skipped while
    /// that side's breaker is open, and its success or failure recorded.
    pub(super) async fn guarded<T>(
        &self,
        side: Side,
        limit: Option<Duration>,
        name: &str,
        key: &CacheKey,
        op: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Refused> {
        let breaker = match side {
            Side::Read => &self.read_breaker,
            Side::Write | Side::Lease => &self.write_breaker,
        };
        if !breaker.allow() {
            self.counters.skipped.add(1);
            return Err(Refused::Skipped);
        }
        let started = Instant::now();
        let result = timed(limit, op).await;
        if side == Side::Read {
            if let Err(TierFailure::Error(e)) = &result
                && e.kind() == ErrorKind::NotSupported
            {
                return Err(Refused::NotSupported);
            }
            self.counters.record_read_latency(started.elapsed());
        }
        match result {
            Ok(value) => {
                breaker.success();
                Ok(value)
            }
            Err(failure) => {
                match side {
                    Side::Read => self.read_failed(&failure, name, key),
                    Side::Write => {
                        self.counters.write_errors.add(1);
                        self.record_failure(&self.write_breaker, &failure, name, key);
                    }
                    Side::Lease => self.lease_failed(&failure, name),
                }
                Err(Refused::Failed)
            }
        }
    }

    /// Counts and logs a failed read (also one found after the backend answered, such as a file
    /// it handed out that cannot be mapped).
    pub(super) fn read_failed(&self, failure: &TierFailure, name: &str, key: &CacheKey) {
        self.counters.errors.add(1);
        self.record_failure(&self.read_breaker, failure, name, key);
    }

    /// Records a failed operation: timeout counter, the breaker of its side, log.
    fn record_failure(&self, breaker: &Breaker, failure: &TierFailure, name: &str, key: &CacheKey) {
        match failure {
            TierFailure::Timeout(after) => {
                self.counters.timeouts.add(1);
                breaker.failure();
                tracing::warn!(tier = %self.name, %key, ?after, "{name} timed out");
            }
            TierFailure::Error(e) => {
                // A refused value, or one damaged (or planted) entry, says nothing about the
                // tier's health: it must not take the tier out for everyone.
                if !matches!(
                    e.kind(),
                    ErrorKind::Capacity | ErrorKind::NotSupported | ErrorKind::Corrupt
                ) {
                    breaker.failure();
                }
                tracing::warn!(tier = %self.name, %key, error = %e, "{name} failed");
            }
        }
    }

    /// Counts a failed lease operation (see [`Side::Lease`]).
    pub(super) fn lease_failed(&self, failure: &TierFailure, name: &str) {
        self.counters.lease_errors.add(1);
        match failure {
            TierFailure::Timeout(after) => {
                self.counters.timeouts.add(1);
                tracing::warn!(tier = %self.name, ?after, "lease {name} timed out");
            }
            TierFailure::Error(e) => {
                tracing::warn!(tier = %self.name, error = %e, "lease {name} failed");
            }
        }
    }

    /// Writes `value`; returns whether the write landed. A put of `n` bytes may take the timeout
    /// plus the time `n` bytes take at the tier's slowest allowed write rate.
    pub(super) async fn put(&self, key: &CacheKey, value: Bytes) -> bool {
        let len = value.len() as u64;
        let limit = self
            .timeout
            .map(|t| t + Duration::from_secs_f64(len as f64 / self.min_write_rate as f64));
        let put = self.backend.put(key, value);
        let landed = self.guarded(Side::Write, limit, "put", key, put).await;
        if landed.is_ok() {
            self.counters.writes.add(1);
            self.counters.bytes_written.add(len);
        }
        landed.is_ok()
    }

    pub(super) async fn delete(&self, key: &CacheKey) {
        let delete = self.backend.delete(key);
        let _ = self
            .guarded(Side::Write, self.timeout, "delete", key, delete)
            .await;
    }
}
