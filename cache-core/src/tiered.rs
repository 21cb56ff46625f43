//! [`Tiered`]: backends composed fastest first, with verification, promotion, background writes,
//! timeouts and circuit breakers.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{Either, join_all, select};
use parking_lot::{Condvar, Mutex};

use crate::backend::Backend;
use crate::breaker::Breaker;
use crate::envelope::{Compression, EnvelopeMeta, Integrity, Opened, VerifyError};
use crate::error::{Context, Error, ErrorKind, Op};
use crate::key::CacheKey;
use crate::mapped::{self, MapError};
use crate::stats::{TierCounters, TierStats};

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
    /// Writes go through a bounded queue to a worker thread; [`Tiered::flush`] waits for them.
    /// When the queue is full a write is dropped and counted in
    /// [`TierStats::dropped_writes`], never silently.
    Background {
        /// Queue length.
        queue: usize,
    },
}

/// One tier: a backend and its policy. Build with [`Tier::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Tier {
    backend: Arc<dyn Backend>,
    name: Option<String>,
    access: Access,
    write: WriteMode,
    timeout: Option<Duration>,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
    compression: Compression,
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

/// What a tier hit returned.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The verified entry.
    pub opened: Opened,
    /// Index of the tier that answered (0 is the fastest).
    pub tier: usize,
}

/// What [`Tiered::get_file`] found.
#[derive(Debug)]
pub enum Found {
    /// A verified entry read into memory.
    Bytes(Hit),
    /// A verified, uncompressed entry in a local file.
    File(FileHit),
}

impl Found {
    /// Index of the tier that answered.
    pub fn tier(&self) -> usize {
        match self {
            Found::Bytes(hit) => hit.tier,
            Found::File(hit) => hit.tier,
        }
    }

    /// The verified entry's metadata.
    pub fn meta(&self) -> &EnvelopeMeta {
        match self {
            Found::Bytes(hit) => &hit.opened.meta,
            Found::File(hit) => &hit.meta,
        }
    }

    /// The payload bytes: the entry in memory, or the verified mapping of the file.
    pub fn payload(&self) -> &[u8] {
        match self {
            Found::Bytes(hit) => &hit.opened.payload,
            Found::File(hit) => hit.payload(),
        }
    }
}

/// A verified entry in a local file. The payload starts at offset 0 of the file and is followed
/// by the envelope's trailer, so loaders that accept trailing bytes can use the file directly.
pub struct FileHit {
    /// The open file (read-only, positioned at its start).
    pub file: std::fs::File,
    map: memmap2::Mmap,
    /// The verified metadata.
    pub meta: EnvelopeMeta,
    payload: Range<usize>,
    /// Index of the tier that answered.
    pub tier: usize,
}

impl FileHit {
    /// The verified payload, read through the mapping the tag was checked on.
    pub fn payload(&self) -> &[u8] {
        &self.map[self.payload.clone()]
    }
}

impl std::fmt::Debug for FileHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHit")
            .field("file", &self.file)
            .field("meta", &self.meta)
            .field("payload", &self.payload)
            .field("tier", &self.tier)
            .finish()
    }
}

/// State shared between a tier and its background worker.
#[derive(Debug)]
struct TierShared {
    backend: Arc<dyn Backend>,
    name: String,
    timeout: Option<Duration>,
    counters: TierCounters,
    breaker: Breaker,
}

#[derive(Debug)]
enum Job {
    Put(CacheKey, Bytes),
    Delete(CacheKey),
}

#[derive(Debug, Default)]
struct Pending {
    count: Mutex<u64>,
    idle: Condvar,
}

impl Pending {
    fn done(&self) {
        let mut count = self.count.lock();
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.idle.notify_all();
        }
    }
}

#[derive(Debug)]
struct Writer {
    sender: SyncSender<Job>,
    pending: Arc<Pending>,
}

#[derive(Debug)]
struct TierState {
    shared: Arc<TierShared>,
    access: Access,
    compression: Compression,
    writer: Option<Writer>,
}

/// Backends composed fastest first.
///
/// * `get` asks tiers in order; the first entry that verifies wins and is copied into the faster
///   writable tiers. Entries that fail verification are counted, deleted from their tier and
///   treated as misses.
/// * `put` writes every writable tier: inline tiers before it returns, background tiers through
///   their queue ([`flush`](Self::flush) waits for those).
/// * A failing or slow tier never fails the caller: errors and timeouts count as misses or failed
///   writes, and after repeated failures the tier is skipped for a cool-down.
///
/// Every method is infallible by design; what went wrong is in [`stats`](Self::stats) and in
/// `tracing` events.
#[derive(Debug)]
pub struct Tiered {
    tiers: Vec<TierState>,
    integrity: Integrity,
}

async fn timed<T>(
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

/// What one read of a tier gave.
enum Fetched<T> {
    Value(T),
    /// A miss, an error, a timeout or an open breaker (all counted).
    Nothing,
    /// The backend does not offer the operation.
    NotSupported,
}

#[derive(Debug)]
enum TierFailure {
    Error(Error),
    Timeout(Duration),
}

impl TierShared {
    /// Records a failed operation: timeout counter, breaker, log.
    fn record_failure(&self, failure: &TierFailure, op: &str, key: &CacheKey) {
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

    fn run_blocking_job(&self, job: Job) {
        match job {
            Job::Put(key, value) => {
                futures::executor::block_on(self.put(&key, value));
            }
            Job::Delete(key) => futures::executor::block_on(self.delete(&key)),
        }
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> bool {
        // Returns whether the write landed.
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

    async fn delete(&self, key: &CacheKey) {
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
}

fn spawn_writer(shared: Arc<TierShared>, queue: usize) -> Option<Writer> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(queue);
    let pending = Arc::new(Pending::default());
    let worker_pending = Arc::clone(&pending);
    let spawned = std::thread::Builder::new()
        .name(format!("warmcache-writer-{}", shared.name))
        .spawn(move || background_worker(shared, receiver, worker_pending));
    match spawned {
        Ok(_) => Some(Writer { sender, pending }),
        Err(e) => {
            tracing::error!(error = %e, "could not start background writer; writing inline");
            None
        }
    }
}

/// Runs queued jobs until every sender is gone (the [`Tiered`] was dropped), then exits.
fn background_worker(shared: Arc<TierShared>, receiver: Receiver<Job>, pending: Arc<Pending>) {
    while let Ok(job) = receiver.recv() {
        // A panicking backend must not strand flush() callers.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.run_blocking_job(job)
        }));
        if result.is_err() {
            TierCounters::add(&shared.counters.write_errors, 1);
            tracing::error!(tier = %shared.name, "backend panicked during a background write");
        }
        pending.done();
    }
}

/// The sealed forms of one entry, made on first use: plain, and zstd (one level per stack; the
/// first compressed tier's level is used for all, since any level decodes the same).
#[derive(Default)]
struct SealedForms {
    plain: Option<Bytes>,
    zstd: Option<Bytes>,
}

impl SealedForms {
    fn get(
        &mut self,
        integrity: &Integrity,
        key: &CacheKey,
        producer: &str,
        kind: u32,
        payload: &[u8],
        compression: Compression,
    ) -> Bytes {
        let slot = match compression {
            Compression::Zstd { .. } => &mut self.zstd,
            _ => &mut self.plain,
        };
        slot.get_or_insert_with(|| integrity.seal_with(key, kind, producer, payload, compression))
            .clone()
    }
}

/// Builds a [`Tiered`].
#[derive(Debug, Default)]
pub struct TieredBuilder {
    tiers: Vec<Tier>,
    integrity: Integrity,
}

impl TieredBuilder {
    /// Adds a tier below the ones added so far (slower).
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tiers.push(tier);
        self
    }

    /// Sets the integrity mode (default: plain blake3 tags).
    pub fn integrity(mut self, integrity: Integrity) -> Self {
        self.integrity = integrity;
        self
    }

    /// Builds the stack, starting a writer thread for each background tier.
    pub fn build(self) -> Tiered {
        let tiers = self
            .tiers
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let name = t
                    .name
                    .unwrap_or_else(|| format!("{i}:{}", t.backend.name()));
                let shared = Arc::new(TierShared {
                    backend: t.backend,
                    name,
                    timeout: t.timeout,
                    counters: TierCounters::default(),
                    breaker: Breaker::new(t.breaker_threshold, t.breaker_cooldown),
                });
                let writer = match (t.access, t.write) {
                    (Access::ReadWrite, WriteMode::Background { queue }) => {
                        spawn_writer(Arc::clone(&shared), queue)
                    }
                    _ => None,
                };
                TierState {
                    shared,
                    access: t.access,
                    compression: t.compression,
                    writer,
                }
            })
            .collect();
        Tiered {
            tiers,
            integrity: self.integrity,
        }
    }
}

impl TierState {
    fn writable(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// Writes inline or enqueues; returns once the write is done or queued.
    async fn write(&self, key: &CacheKey, value: Bytes) {
        match &self.writer {
            Some(writer) => self.enqueue(writer, Job::Put(*key, value)),
            None => {
                self.shared.put(key, value).await;
            }
        }
    }

    async fn remove(&self, key: &CacheKey) {
        match &self.writer {
            Some(writer) => self.enqueue(writer, Job::Delete(*key)),
            None => self.shared.delete(key).await,
        }
    }

    fn enqueue(&self, writer: &Writer, job: Job) {
        *writer.pending.count.lock() += 1;
        match writer.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                writer.pending.done();
                TierCounters::add(&self.shared.counters.dropped_writes, 1);
                tracing::warn!(tier = %self.shared.name, "background queue full; write dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                writer.pending.done();
                TierCounters::add(&self.shared.counters.write_errors, 1);
                tracing::error!(tier = %self.shared.name, "background writer has stopped");
            }
        }
    }

    fn pending(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| *w.pending.count.lock())
    }
}

impl Tiered {
    /// Starts building a stack.
    pub fn builder() -> TieredBuilder {
        TieredBuilder::default()
    }

    /// The integrity mode entries are sealed and verified with.
    pub fn integrity(&self) -> &Integrity {
        &self.integrity
    }

    /// Number of tiers.
    pub fn len(&self) -> usize {
        self.tiers.len()
    }

    /// Whether there are no tiers.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// The backend of tier `index`, fastest first.
    pub fn backend(&self, index: usize) -> Option<&Arc<dyn Backend>> {
        self.tiers.get(index).map(|t| &t.shared.backend)
    }

    /// The name of tier `index`.
    pub fn tier_name(&self, index: usize) -> Option<&str> {
        self.tiers.get(index).map(|t| t.shared.name.as_str())
    }

    /// Seals `payload` for `key` with this stack's integrity mode.
    pub fn seal(&self, key: &CacheKey, kind: u32, producer: &str, payload: &[u8]) -> Bytes {
        self.integrity.seal(key, kind, producer, payload)
    }

    /// The first verified entry for `key`, promoted into faster writable tiers. `None` when no
    /// tier has a valid one.
    pub async fn get(&self, key: &CacheKey) -> Option<Hit> {
        for index in 0..self.tiers.len() {
            if let Some(hit) = self.read_bytes(index, key).await {
                return Some(hit);
            }
        }
        None
    }

    /// Like [`get`](Self::get), but a tier that offers local files
    /// ([`Capabilities::local_files`](crate::Capabilities::local_files)) is read through a
    /// read-only mapping of its file, verified there, and returned as a [`FileHit`] holding the
    /// open file, so the caller can map it again (for example with wasmtime's
    /// `Module::deserialize_open_file`) without copying the entry into memory.
    ///
    /// Compressed entries, and tiers without files, come back as [`Found::Bytes`]. A file hit is
    /// copied into faster writable tiers only when there are any.
    pub async fn get_file(&self, key: &CacheKey) -> Option<Found> {
        for (index, tier) in self.tiers.iter().enumerate() {
            let found = if tier.shared.backend.capabilities().local_files {
                self.read_file(index, key).await
            } else {
                self.read_bytes(index, key).await.map(Found::Bytes)
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Runs one read on tier `index` under its breaker and timeout, counting skips, misses,
    /// errors and latency. A backend without the operation is reported, not counted.
    async fn fetch<T, F>(&self, index: usize, key: &CacheKey, op: &str, read: F) -> Fetched<T>
    where
        F: Future<Output = Result<Option<T>, Error>>,
    {
        let shared = &self.tiers[index].shared;
        let counters = &shared.counters;
        if !shared.breaker.allow() {
            TierCounters::add(&counters.skipped, 1);
            return Fetched::Nothing;
        }
        let started = Instant::now();
        let result = timed(shared.timeout, read).await;
        match result {
            Err(TierFailure::Error(ref e)) if e.kind() == ErrorKind::NotSupported => {
                return Fetched::NotSupported;
            }
            _ => counters.record_read_latency(started.elapsed()),
        }
        match result {
            Ok(Some(value)) => {
                shared.breaker.success();
                Fetched::Value(value)
            }
            Ok(None) => {
                shared.breaker.success();
                TierCounters::add(&counters.misses, 1);
                Fetched::Nothing
            }
            Err(failure) => {
                TierCounters::add(&counters.errors, 1);
                shared.record_failure(&failure, op, key);
                Fetched::Nothing
            }
        }
    }

    /// Reads tier `index` as bytes; `Some` on a verified hit.
    async fn read_bytes(&self, index: usize, key: &CacheKey) -> Option<Hit> {
        let backend = &self.tiers[index].shared.backend;
        let Fetched::Value(bytes) = self.fetch(index, key, "get", backend.get(key)).await else {
            return None;
        };
        let counters = &self.tiers[index].shared.counters;
        match self.integrity.open(key, &bytes) {
            Ok(opened) => {
                TierCounters::add(&counters.hits, 1);
                TierCounters::add(&counters.bytes_read, bytes.len() as u64);
                self.promote(key, &bytes, &opened, index).await;
                Some(Hit {
                    opened,
                    tier: index,
                })
            }
            Err(e) => {
                self.reject(index, key, &e).await;
                None
            }
        }
    }

    /// Reads tier `index` through its local file; falls back to bytes when the backend turns
    /// out not to offer files after all.
    async fn read_file(&self, index: usize, key: &CacheKey) -> Option<Found> {
        let shared = &self.tiers[index].shared;
        let counters = &shared.counters;
        let file = match self
            .fetch(index, key, "open_file", shared.backend.open_file(key))
            .await
        {
            Fetched::Value(file) => file,
            Fetched::Nothing => return None,
            Fetched::NotSupported => return self.read_bytes(index, key).await.map(Found::Bytes),
        };
        let entry = match mapped::map_and_verify(&self.integrity, key, &file) {
            Ok(entry) => entry,
            Err(MapError::Verify(e)) => {
                self.reject(index, key, &e).await;
                return None;
            }
            Err(MapError::Io(e)) => {
                TierCounters::add(&counters.errors, 1);
                let failure = TierFailure::Error(Error::Io {
                    context: Context::with_key(shared.backend.name(), Op::OpenFile, key),
                    source: e,
                });
                shared.record_failure(&failure, "map", key);
                return None;
            }
        };
        TierCounters::add(&counters.hits, 1);
        TierCounters::add(&counters.bytes_read, entry.map.len() as u64);
        let has_faster_writable = self.tiers[..index].iter().any(TierState::writable);
        if entry.meta.compressed || has_faster_writable {
            let stored = Bytes::copy_from_slice(&entry.map);
            let payload = if entry.meta.compressed {
                match crate::envelope::decompress(
                    &stored[entry.payload.clone()],
                    entry.meta.decoded_len,
                ) {
                    Ok(decoded) => Bytes::from(decoded),
                    Err(e) => {
                        self.reject(index, key, &e).await;
                        return None;
                    }
                }
            } else {
                stored.slice(entry.payload.clone())
            };
            let opened = Opened {
                meta: entry.meta.clone(),
                payload,
            };
            self.promote(key, &stored, &opened, index).await;
            if entry.meta.compressed {
                return Some(Found::Bytes(Hit {
                    opened,
                    tier: index,
                }));
            }
        }
        Some(Found::File(FileHit {
            file,
            map: entry.map,
            meta: entry.meta,
            payload: entry.payload,
            tier: index,
        }))
    }

    /// Counts an entry that failed verification and removes it from a writable tier.
    async fn reject(&self, index: usize, key: &CacheKey, error: &VerifyError) {
        let tier = &self.tiers[index];
        let counters = &tier.shared.counters;
        TierCounters::add(&counters.misses, 1);
        if error.is_forgery() {
            TierCounters::add(&counters.forged, 1);
        } else {
            TierCounters::add(&counters.corrupt, 1);
        }
        tracing::warn!(tier = %tier.shared.name, %key, %error, "entry failed verification");
        if tier.writable() {
            tier.remove(key).await;
        }
    }

    async fn promote(&self, key: &CacheKey, stored: &Bytes, opened: &Opened, found_at: usize) {
        let mut sealed = SealedForms::default();
        if opened.meta.compressed {
            // The stored bytes are the form of whichever zstd level wrote them; reuse them for
            // every compressed tier rather than recompressing.
            sealed.zstd = Some(stored.clone());
        } else {
            sealed.plain = Some(stored.clone());
        }
        let writes = self.tiers[..found_at]
            .iter()
            .filter(|t| t.writable())
            .map(|t| {
                let bytes = sealed.get(
                    &self.integrity,
                    key,
                    &opened.meta.producer,
                    opened.meta.kind,
                    &opened.payload,
                    t.compression,
                );
                async move {
                    TierCounters::add(&t.shared.counters.promotions, 1);
                    t.write(key, bytes).await;
                }
            })
            .collect::<Vec<_>>();
        join_all(writes).await;
    }

    /// Writes an already sealed entry as it is to every writable tier, whatever their
    /// compression setting.
    pub async fn put_sealed(&self, key: &CacheKey, sealed: Bytes) {
        let writes = self
            .tiers
            .iter()
            .filter(|t| t.writable())
            .map(|t| t.write(key, sealed.clone()));
        join_all(writes).await;
    }

    /// Seals `payload` (once per compression setting in use) and writes it to every writable
    /// tier.
    pub async fn put(&self, key: &CacheKey, kind: u32, producer: &str, payload: &[u8]) {
        let mut sealed = SealedForms::default();
        let writes = self
            .tiers
            .iter()
            .filter(|t| t.writable())
            .map(|t| {
                let bytes =
                    sealed.get(&self.integrity, key, producer, kind, payload, t.compression);
                t.write(key, bytes)
            })
            .collect::<Vec<_>>();
        join_all(writes).await;
    }

    /// Deletes `key` from every writable tier.
    pub async fn delete(&self, key: &CacheKey) {
        join_all(
            self.tiers
                .iter()
                .filter(|t| t.writable())
                .map(|t| t.remove(key)),
        )
        .await;
    }

    /// Blocks until every background write queued so far has finished.
    ///
    /// Call it before the process exits, or queued writes to slow tiers are lost.
    pub fn flush(&self) {
        for tier in &self.tiers {
            if let Some(writer) = &tier.writer {
                let mut count = writer.pending.count.lock();
                while *count > 0 {
                    writer.pending.idle.wait(&mut count);
                }
            }
        }
    }

    /// Background writes queued and not yet finished, over all tiers.
    pub fn pending_writes(&self) -> u64 {
        self.tiers.iter().map(TierState::pending).sum()
    }

    /// Per-tier counters, fastest first.
    pub fn stats(&self) -> Vec<TierStats> {
        self.tiers
            .iter()
            .map(|t| {
                t.shared.counters.snapshot(
                    t.shared.name.clone(),
                    t.shared.backend.name().to_owned(),
                    t.shared.breaker.is_open(),
                    t.pending(),
                )
            })
            .collect()
    }
}
