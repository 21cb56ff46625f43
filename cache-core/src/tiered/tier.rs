//! A tier's configuration ([`Tier`]) and the state behind it: the backend under its timeout,
//! counters and circuit breaker.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{Either, select};
use parking_lot::Mutex;

use crate::backend::Backend;
use crate::breaker::Breaker;
use crate::envelope::{Compression, Trust};
use crate::error::{Error, ErrorKind};
use crate::key::CacheKey;
use crate::stats::TierCounters;

use super::coordinate::HeldLease;
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
#[non_exhaustive]
pub(crate) enum WriteMode {
    /// The caller's put (or get, for promotion) waits for the write.
    Inline,
    /// Writes go through a queue to a worker thread, in order; [`Tiered::flush`](super::Tiered::flush)
    /// waits for those queued before it. The queue is bounded by both `queue` jobs and
    /// `max_bytes` bytes (a single larger value is accepted into an empty queue).
    Background {
        /// Most jobs queued or running.
        queue: usize,
        /// Most bytes queued or running.
        max_bytes: u64,
        /// What a write does when the queue is full.
        when_full: WhenFull,
    },
}

/// What a write to a full background queue does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// The write is dropped and counted in
    /// [`TierStats::dropped_writes`](crate::TierStats::dropped_writes): a request never waits
    /// for a slow tier. The default, for serving.
    #[default]
    Drop,
    /// The writing thread waits for room: nothing is dropped, and a fast producer is slowed to
    /// the tier's pace. For batch jobs that fill a tier (`warmcache precompile`); it blocks the
    /// calling thread, so it does not belong on an async executor's worker.
    Wait,
}

/// The slowest write rate a put is allowed by default, in bytes per second: 1 MiB/s.
pub const DEFAULT_MIN_WRITE_RATE: u64 = 1 << 20;

/// Bytes a background queue holds at most unless set with [`Tier::background_bytes`].
pub const DEFAULT_QUEUE_BYTES: u64 = 256 << 20;

/// One tier: a backend and its policy. Build with [`Tier::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Tier {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) name: Option<String>,
    pub(super) access: Access,
    pub(super) write: WriteMode,
    pub(super) timeout: Option<Duration>,
    pub(super) min_write_rate: u64,
    pub(super) breaker_threshold: u32,
    pub(super) breaker_cooldown: Duration,
    pub(super) compression: Compression,
    pub(super) verified_files: Option<Arc<crate::files::VerifiedFiles>>,
    pub(super) own_namespace: bool,
    pub(super) sealed_copies: bool,
    pub(super) trust: Trust,
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
            min_write_rate: DEFAULT_MIN_WRITE_RATE,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            compression: Compression::None,
            verified_files: None,
            own_namespace: false,
            sealed_copies: false,
            trust: Trust::Secret,
        }
    }

    /// Accepts on this tier only entries signed by a key the stack's
    /// [`Integrity`](crate::Integrity) trusts ([`Trust::Signature`]), for a tier a fleet shares:
    /// nodes that can verify its entries cannot make one. A stack without a signing key never
    /// writes it (what it computes stays in its other tiers); one with a key signs what it
    /// writes, and replaces an entry that fails verification here instead of deleting it. What
    /// fails is counted as forged and otherwise left alone.
    pub fn signed(mut self) -> Self {
        self.trust = Trust::Signature;
        self
    }

    /// Loads this tier's entry files from sealed copies instead of mapping them: each file is
    /// copied into an anonymous memory file sealed against writes (Linux `memfd_create` with
    /// `F_SEAL_WRITE`), and that copy is verified and handed out. A mapping shows whatever is
    /// later written to the file, and any process of this user can write it (one uid is one
    /// trust domain, docs/DESIGN.md "Trust"); a sealed copy cannot change after it verified.
    /// For deployments whose co-tenants share a uid (containers sharing a volume as root).
    /// Costs a copy and a full hash per load (verified-file records are not used); off Linux,
    /// entries are read into memory as verified copies instead.
    pub fn sealed_copies(mut self) -> Self {
        self.sealed_copies = true;
        self
    }

    /// Declares that this tier holds only entries sealed under the stack's current secret: a
    /// namespace of a shared store named by its [`key_id`](crate::Integrity::key_id), as
    /// `warmcache_s3` and `warmcache_fs` builders make with `namespace`. Nodes with other
    /// secrets write elsewhere, so an entry here that fails verification is damaged or planted,
    /// and is replaced like a private tier's instead of being left alone for its owner. Has no
    /// effect without a secret (every plain cache shares one namespace).
    pub fn own_namespace(mut self) -> Self {
        self.own_namespace = true;
        self
    }

    /// Opt-in for a tier that hands out local files: an entry file that verified in full once is
    /// not hashed again while its identity (device, inode, size, times) is unchanged, as
    /// recorded in `verified` (see [`VerifiedFiles`](crate::files::VerifiedFiles) for what this
    /// gives up and what it keeps). The envelope's structure, key and kind are still checked on
    /// every load. The default is to verify every load in full.
    pub fn verified_files(mut self, verified: crate::files::VerifiedFiles) -> Self {
        self.verified_files = Some(Arc::new(verified));
        self
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

    /// Writes through a background queue of at most `queue` entries and
    /// [`DEFAULT_QUEUE_BYTES`] bytes (for slow or remote tiers); a full queue drops writes.
    pub fn background(mut self, queue: usize) -> Self {
        let (max_bytes, when_full) = match self.write {
            WriteMode::Background {
                max_bytes,
                when_full,
                ..
            } => (max_bytes, when_full),
            WriteMode::Inline => (DEFAULT_QUEUE_BYTES, WhenFull::Drop),
        };
        self.write = WriteMode::Background {
            queue: queue.max(1),
            max_bytes,
            when_full,
        };
        self
    }

    /// Bounds the background queue to `max_bytes` bytes (default [`DEFAULT_QUEUE_BYTES`]).
    /// Makes writes background with a queue of 64 if they were inline.
    pub fn background_bytes(mut self, max_bytes: u64) -> Self {
        self = self.ensure_background();
        if let WriteMode::Background { max_bytes: m, .. } = &mut self.write {
            *m = max_bytes.max(1);
        }
        self
    }

    /// A write to a full background queue waits for room instead of being dropped
    /// ([`WhenFull::Wait`]). Makes writes background with a queue of 64 if they were inline.
    pub fn wait_when_full(mut self) -> Self {
        self = self.ensure_background();
        if let WriteMode::Background { when_full, .. } = &mut self.write {
            *when_full = WhenFull::Wait;
        }
        self
    }

    fn ensure_background(self) -> Self {
        match self.write {
            WriteMode::Inline => self.background(64),
            WriteMode::Background { .. } => self,
        }
    }

    /// Bounds every operation on this tier; one that runs longer counts as a failure. Blocking
    /// backends (files, embedded databases) then run off the caller's thread, so the bound holds
    /// for a stuck disk too; without a timeout they run inline when no Tokio runtime is current.
    /// A put of
    /// `n` bytes may take `timeout` plus the time `n` bytes take at the
    /// [`min_write_rate`](Self::min_write_rate), so a large artifact can always be uploaded.
    /// Reads get `timeout` alone: set it to cover the largest download.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The slowest upload rate, in bytes per second, a put is allowed before it times out
    /// (default [`DEFAULT_MIN_WRITE_RATE`], 1 MiB/s). See [`timeout`](Self::timeout).
    pub fn min_write_rate(mut self, bytes_per_second: u64) -> Self {
        self.min_write_rate = bytes_per_second.max(1);
        self
    }

    /// Opens a circuit breaker after `threshold` consecutive failures, for `cooldown`. Reads and
    /// writes have a breaker each, so failing writes (a full disk, read-only credentials) never
    /// stop reads from a tier that still serves them, and the other way round.
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
    pub(super) min_write_rate: u64,
    pub(super) verified_files: Option<Arc<crate::files::VerifiedFiles>>,
    /// Load entry files from sealed copies ([`Tier::sealed_copies`]).
    pub(super) sealed_copies: bool,
    pub(super) counters: TierCounters,
    /// Health of `get` and `open_file`.
    pub(super) read_breaker: Breaker,
    /// Health of `put` and `delete`.
    pub(super) write_breaker: Breaker,
}

#[derive(Debug)]
pub(super) enum TierFailure {
    Error(Error),
    Timeout(Duration),
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
    /// Records a failed operation: timeout counter, the breaker of its side, log.
    pub(super) fn record_failure(
        &self,
        breaker: &Breaker,
        failure: &TierFailure,
        op: &str,
        key: &CacheKey,
    ) {
        match failure {
            TierFailure::Timeout(after) => {
                self.counters.timeouts.add(1);
                breaker.failure();
                tracing::warn!(tier = %self.name, %key, ?after, "{op} timed out");
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
                tracing::warn!(tier = %self.name, %key, error = %e, "{op} failed");
            }
        }
    }

    /// Writes `value` under the breaker and timeout; returns whether the write landed.
    pub(super) async fn put(&self, key: &CacheKey, value: Bytes) -> bool {
        if !self.write_breaker.allow() {
            self.counters.skipped.add(1);
            return false;
        }
        let len = value.len() as u64;
        let limit = self
            .timeout
            .map(|t| t + Duration::from_secs_f64(len as f64 / self.min_write_rate as f64));
        match timed(limit, self.backend.put(key, value)).await {
            Ok(()) => {
                self.write_breaker.success();
                self.counters.writes.add(1);
                self.counters.bytes_written.add(len);
                true
            }
            Err(failure) => {
                self.counters.write_errors.add(1);
                self.record_failure(&self.write_breaker, &failure, "put", key);
                false
            }
        }
    }

    pub(super) async fn delete(&self, key: &CacheKey) {
        if !self.write_breaker.allow() {
            self.counters.skipped.add(1);
            return;
        }
        match timed(self.timeout, self.backend.delete(key)).await {
            Ok(()) => self.write_breaker.success(),
            Err(failure) => {
                self.counters.write_errors.add(1);
                self.record_failure(&self.write_breaker, &failure, "delete", key);
            }
        }
    }

    pub(super) fn run_job(&self, job: Job) {
        match job {
            Job::Put(key, value, lease) => futures::executor::block_on(async {
                self.put(&key, value).await;
                if let Some(lease) = lease {
                    lease.release().await;
                }
            }),
            Job::Delete(key) => futures::executor::block_on(self.delete(&key)),
        }
    }
}

/// Most keys remembered per shared tier as holding an entry this cache could not verify.
const FOREIGN_MEMORY: usize = 4096;

/// What a cache does with an entry that failed verification on a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unverified {
    /// Deletes it: a private tier, or the namespace of this cache's own secret.
    Delete,
    /// Keeps it until this cache writes the key: a signed tier this cache signs for.
    Replace,
    /// Never touches it: a tier shared with caches that may hold other secrets, or a signed
    /// tier this cache cannot write.
    LeaveAlone,
}

/// A tier as built into a [`Tiered`](super::Tiered).
#[derive(Debug)]
pub(super) struct TierState {
    pub(super) shared: Arc<TierShared>,
    pub(super) access: Access,
    pub(super) compression: Compression,
    pub(super) writer: Option<Writer>,
    /// The backend is shared with other caches ([`Capabilities::shared`](crate::Capabilities)).
    pub(super) is_shared: bool,
    /// The rule its entries meet ([`Tier::signed`]).
    pub(super) trust: Trust,
    /// Its entries are authenticated (by a secret or a signature), not only checked for damage.
    pub(super) authenticated: bool,
    /// Signed, and this cache holds no key to write it: what it computes stays elsewhere.
    pub(super) consumes_only: bool,
    pub(super) unverified: Unverified,
    /// Keys whose entry in this shared tier failed verification here: another node's (sealed
    /// under another secret) or an attacker's. Never deleted by this cache.
    pub(super) foreign: Mutex<HashSet<CacheKey>>,
}

impl TierState {
    pub(super) fn writable(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// What an entry written here looks like: its compression and the rule it meets.
    pub(super) fn form(&self) -> (Compression, Trust) {
        (self.compression, self.trust)
    }

    /// Whether this cache may delete what the tier holds for `key` after it failed
    /// verification: yes for a private tier, never for a shared one, where it may be another
    /// node's entry under another secret.
    pub(super) fn remember_unverified(&self, key: &CacheKey) -> bool {
        if self.unverified == Unverified::Delete {
            return true;
        }
        let mut foreign = self.foreign.lock();
        if foreign.len() >= FOREIGN_MEMORY {
            foreign.clear();
        }
        foreign.insert(*key);
        false
    }

    /// Whether this shared tier's entry for `key` failed verification here.
    pub(super) fn is_foreign(&self, key: &CacheKey) -> bool {
        self.unverified != Unverified::Delete && self.foreign.lock().contains(key)
    }

    /// Forgets `key` as foreign (it verified since, or this cache replaced it).
    pub(super) fn verified(&self, key: &CacheKey) {
        if self.unverified != Unverified::Delete {
            self.foreign.lock().remove(key);
        }
    }

    /// Writes inline or enqueues; returns once the write is done or queued. A shared tier's
    /// entry that failed verification here is never overwritten.
    pub(super) async fn write(&self, key: &CacheKey, value: Bytes) {
        self.write_then_release(key, value, None).await;
    }

    /// [`write`](Self::write), then releases `lease` once the write has landed, failed or been
    /// dropped (for a background tier, the writer releases it after the put).
    pub(super) async fn write_then_release(
        &self,
        key: &CacheKey,
        value: Bytes,
        lease: Option<Arc<HeldLease>>,
    ) {
        if self.unverified == Unverified::Replace {
            self.verified(key);
        }
        let unsent = if self.is_foreign(key) {
            self.shared.counters.skipped.add(1);
            tracing::debug!(tier = %self.shared.name, %key, "not overwriting an entry this cache cannot verify");
            lease
        } else {
            match &self.writer {
                Some(writer) => writer.enqueue(&self.shared, Job::Put(*key, value, lease)),
                None => {
                    self.shared.put(key, value).await;
                    lease
                }
            }
        };
        if let Some(lease) = unsent {
            lease.release().await;
        }
    }

    pub(super) async fn remove(&self, key: &CacheKey) {
        match &self.writer {
            Some(writer) => {
                // A delete carries no lease, so nothing comes back.
                let _ = writer.enqueue(&self.shared, Job::Delete(*key));
            }
            None => self.shared.delete(key).await,
        }
    }

    pub(super) fn pending(&self) -> u64 {
        self.writer.as_ref().map_or(0, Writer::pending)
    }
}
