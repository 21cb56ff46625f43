//! A tier's public configuration: [`Tier`] and its settings.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::envelope::{Compression, Trust};

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
