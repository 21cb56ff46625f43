//! What a backend author needs: the storage contract [`Backend`], its synchronous form
//! [`BlockingBackend`] (one adapter makes any blocking store a `Backend`), [`Limits`] for
//! bounded stores, the [`Eviction`] policies and the [`SampledLru`] eviction that redb and
//! RocksDB share, the coordination
//! capability [`Lease`], and the helpers [`maybe_spawn_blocking`] and [`page_from_sorted`].
//!
//! Implement [`Backend`] (async stores) or [`BlockingBackend`] (file and database stores), then
//! run `warmcache-conformance`'s suite against it.

mod blocking;
mod eviction;
mod guard;
mod lease;
mod limits;
mod lru;
mod runtime;
mod spawn;

pub use blocking::BlockingBackend;
pub use eviction::{Eviction, MAX_COUNTED_USES, cost_of, priority};
pub use guard::guard_panics;
pub use lease::Lease;
pub use limits::Limits;
pub use lru::{EVICTION_SAMPLE, LruIndex, LruRecord, SampledLru, Totals, Visit};
pub use runtime::{ClientRuntime, Spawner};
pub use spawn::{inline_allowed, maybe_spawn_blocking};

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Op, Result};
use crate::key::CacheKey;

/// What a backend is and offers. Returned by [`Backend::capabilities`].
///
/// Construct with [`Capabilities::new`] and the `with_*` setters; the struct is
/// `#[non_exhaustive]` so new capabilities can be added without breaking backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Entries survive a clean reopen and a crash of the process (every acknowledged put). For
    /// a remote store: they survive this client (a new client on the same location sees them);
    /// whether they survive the server is the server's business, not the backend's.
    pub persistent: bool,
    /// Others may write the same store: other hosts (an object store bucket) or other users
    /// of this host (a directory or database others can write, see
    /// [`files::writable_by_others`](crate::files::writable_by_others)). Its entries are
    /// trusted only when authenticated by a key; entries that fail verification there are left
    /// alone, never deleted or overwritten.
    pub shared: bool,
    /// The byte capacity the backend keeps its entries under, if it is bounded.
    pub capacity: Option<u64>,
    /// Bytes a bounded backend may hold over its [`capacity`](Self::capacity) at any moment
    /// (for example one value in flight while an eviction catches up). Document why in the
    /// backend; the conformance suite allows exactly this much and no more. 0 by default.
    pub capacity_slack: u64,
    /// The largest value the backend accepts, if it has a limit.
    pub max_value_size: Option<u64>,
    /// [`Backend::open_file`] can hand out local files.
    pub local_files: bool,
    /// [`Backend::try_lease`] hands out leases, so processes or hosts sharing the store compute
    /// a cold entry once between them.
    pub coordinates: bool,
    /// [`Backend::pin`] keeps entries from eviction.
    pub pins: bool,
}

impl Capabilities {
    /// A volatile, local, unbounded backend without file access.
    pub const fn new() -> Self {
        Self {
            persistent: false,
            shared: false,
            capacity: None,
            capacity_slack: 0,
            max_value_size: None,
            local_files: false,
            coordinates: false,
            pins: false,
        }
    }

    /// Sets [`persistent`](Self::persistent).
    pub const fn with_persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Sets [`shared`](Self::shared).
    pub const fn with_shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Sets [`capacity`](Self::capacity).
    pub const fn with_capacity(mut self, capacity: Option<u64>) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`capacity_slack`](Self::capacity_slack).
    pub const fn with_capacity_slack(mut self, slack: u64) -> Self {
        self.capacity_slack = slack;
        self
    }

    /// Sets [`max_value_size`](Self::max_value_size).
    pub const fn with_max_value_size(mut self, max: Option<u64>) -> Self {
        self.max_value_size = max;
        self
    }

    /// Sets [`local_files`](Self::local_files).
    pub const fn with_local_files(mut self, local_files: bool) -> Self {
        self.local_files = local_files;
        self
    }

    /// Sets [`coordinates`](Self::coordinates).
    pub const fn with_coordinates(mut self, coordinates: bool) -> Self {
        self.coordinates = coordinates;
        self
    }

    /// Sets [`pins`](Self::pins).
    pub const fn with_pins(mut self, pins: bool) -> Self {
        self.pins = pins;
        self
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::new()
    }
}

/// How much a backend holds. Returned by [`Backend::usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Number of entries.
    pub entries: u64,
    /// Sum of the stored values' lengths in bytes (keys and the store's own overhead excluded).
    pub bytes: u64,
}

/// One entry in a key listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The entry's key.
    pub key: CacheKey,
    /// The stored value's length in bytes.
    pub size: u64,
}

/// A page of a key listing. Returned by [`Backend::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Entries in ascending key order.
    pub entries: Vec<KeyInfo>,
    /// Pass this as `after` to get the next page; `None` when the listing is complete.
    pub next: Option<CacheKey>,
}

/// A store of opaque values under [`CacheKey`]s.
///
/// Implement this trait to add a storage backend, then prove it with the `warmcache-conformance`
/// suite. Values are opaque bytes: integrity (the envelope) is handled above backends, so a
/// backend stores and returns exactly what it is given.
///
/// # Contract
///
/// * `put` replaces atomically: a concurrent reader sees the complete old or the complete new
///   value, never a mix or a prefix. After `put` returns `Ok`, `get` in the same process returns
///   the new value (until it is deleted, overwritten or evicted).
/// * A missing key is `Ok(None)` / `Ok(false)`, not an error; deleting a missing key is `Ok`.
/// * A bounded backend never holds more than its byte capacity (plus the slack it declares in
///   [`Capabilities::capacity_slack`]), counted as the values it can still return, evicts to
///   make room (never the value just put), and refuses a value over [`Capabilities::max_value_size`] with
///   [`Error::Capacity`].
/// * A persistent backend keeps every acknowledged put across a clean reopen, and after a crash
///   (SIGKILL mid-write) reopens without error, with no torn value visible.
/// * Futures do not depend on a particular executor: they make progress when polled by Tokio or
///   by `futures::executor::block_on`. Blocking work goes through [`maybe_spawn_blocking`];
///   stores whose operations block implement [`BlockingBackend`] instead, which does that.
/// * `open_file`, where offered, hands out a file holding exactly `get`'s bytes that is never
///   modified in place afterwards: a new value is written to a new file and renamed over the
///   entry, a delete unlinks it. A loader may map the file for as long as it holds it, and a
///   mapping shares pages with the file: the backend must hand out only files that nobody else
///   can modify in place either (on a directory others can write, that means checking owner,
///   permissions, links and file type of the opened handle). For an entry it cannot hand out
///   safely it answers [`Error::NotSupported`], and [`Tiered`](crate::Tiered) reads a verified
///   copy through `get` instead.
/// * `try_lease`, where offered ([`Capabilities::coordinates`]), is a mutual exclusion per key
///   between everyone sharing the store: of concurrent callers at most one gets the lease; it
///   can be taken again once released, or once it was dropped without release (its holder
///   died) and `ttl` has passed since it was taken or last renewed.
///   Leases never show as entries (`get`, `list`, `usage`, `clear` do not see them).
///
/// # Errors
///
/// Failures are [`Error`]s whose [`Context`] names the backend, the operation and the key.
///
/// # Cancellation
///
/// Dropping a future part-way must leave the store consistent: a dropped `put` leaves the old or
/// the new value, nothing else.
#[async_trait]
pub trait Backend: Debug + Send + Sync + 'static {
    /// A short name for messages and stats, such as `"redb"` or `"memory"`.
    fn name(&self) -> &str;

    /// What this backend is and offers.
    fn capabilities(&self) -> Capabilities;

    /// The value stored under `key`, or `None`.
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>>;

    /// Stores `value` under `key`, replacing any previous value atomically.
    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()>;

    /// Removes `key`. Removing a missing key is not an error.
    async fn delete(&self, key: &CacheKey) -> Result<()>;

    /// Whether `key` is present.
    async fn contains(&self, key: &CacheKey) -> Result<bool>;

    /// Removes every entry.
    async fn clear(&self) -> Result<()>;

    /// Up to `limit` entries with keys strictly greater than `after` (all keys when `None`), in
    /// ascending key order.
    ///
    /// The paging contract ([`BackendExt::list_all`] and the conformance suite rely on it):
    ///
    /// * `after` need not be a stored key: the page starts at the first key greater than it.
    ///   After the greatest stored key (or on an empty store) the page is empty with no `next`.
    /// * A `limit` of 0 is treated as 1; a page never holds more than `limit` entries.
    /// * `next` is the key of the page's last entry, to pass back as `after`, and `None` ends
    ///   the listing. A page with a `next` is never empty; it may be the last one (the next call
    ///   then returns an empty page without `next`), for stores that cannot tell cheaply.
    /// * Each entry's `size` is the length of the value `get` would return now.
    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage>;

    /// Entry count and stored bytes.
    async fn usage(&self) -> Result<Usage>;

    /// The last `len` bytes of the value (all of it when it is shorter), or `Ok(None)` when
    /// the key is missing: an entry's trailer without its payload, for listing large caches
    /// ([`inspect_trailer`](crate::inspect_trailer)), or with `u64::MAX` the whole value for a
    /// check. Not a use of the entry: it must not count as one for eviction, or listing and
    /// verifying a cache would make its least used entries look freshest.
    ///
    /// The default reads the whole value with [`get`](Self::get); backends whose `get` records
    /// use, and those that can read a suffix (a ranged request, a file's tail), override it.
    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        Ok(self.get(key).await?.map(|value| tail(value, len)))
    }

    /// An opened, read-only local file holding exactly the bytes [`get`](Self::get) would return,
    /// so a loader can map it instead of copying it. `Ok(None)` when the key is missing.
    ///
    /// The default returns [`Error::NotSupported`]; backends that set
    /// [`Capabilities::local_files`] override it. The file must never be modified in place
    /// after it was handed out (see the contract above).
    async fn open_file(&self, key: &CacheKey) -> Result<Option<std::fs::File>> {
        Err(Error::NotSupported {
            context: Context::with_key(self.name(), Op::OpenFile, key),
        })
    }

    /// Deletes entries until the values total at most `max_bytes` (maintenance, such as
    /// `warmcache gc`), in the order the backend evicts them ([`Eviction`]: least recently used
    /// first, or least worth keeping), never pinned ones. Returns how many were deleted.
    ///
    /// The default returns [`Error::NotSupported`], for stores that keep no recency (a remote
    /// bucket: use its lifecycle rules).
    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        let _ = max_bytes;
        Err(Error::NotSupported {
            context: Context::new(self.name(), Op::Shrink),
        })
    }

    /// Takes the lease on `key` for `ttl`, recording `holder` (who took it, for people reading
    /// the store), or `Ok(None)` when someone else holds it and it has not expired. See
    /// [`Lease`] for how it ends.
    ///
    /// The default returns [`Error::NotSupported`]; backends that set
    /// [`Capabilities::coordinates`] override it.
    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        let _ = (ttl, holder);
        Err(Error::NotSupported {
            context: Context::with_key(self.name(), Op::Lease, key),
        })
    }

    /// Pins `key` (`pinned = true`) so that neither eviction nor
    /// [`shrink_to`](Self::shrink_to) takes it, or unpins it. Returns whether the entry is
    /// present: pinning or unpinning a missing key changes nothing and returns `false`.
    ///
    /// * A pinned entry counts against the capacity; eviction chooses among the others.
    /// * A pin that would take the pinned entries over [`MAX_PINNED_SHARE`] of the capacity is
    ///   refused with [`Error::Capacity`] (its `limit` is that share), so eviction always has
    ///   room to work.
    /// * A put of a pinned key keeps the pin; [`delete`](Self::delete) and
    ///   [`clear`](Self::clear) drop it with the entry. Pins of a persistent backend persist.
    ///
    /// The default returns [`Error::NotSupported`]; backends that set [`Capabilities::pins`]
    /// override it.
    async fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        let _ = pinned;
        Err(Error::NotSupported {
            context: Context::with_key(self.name(), Op::Pin, key),
        })
    }
}

/// The share of a backend's capacity its pinned entries may take together
/// ([`Backend::pin`]): the rest is where eviction makes room.
pub const MAX_PINNED_SHARE: f64 = 0.8;

/// The most bytes pinned entries may take in a backend of `capacity` bytes.
pub fn max_pinned(capacity: u64) -> u64 {
    (capacity as f64 * MAX_PINNED_SHARE) as u64
}

/// Convenience methods for every [`Backend`], implemented once here so backends cannot get them
/// wrong.
#[async_trait]
pub trait BackendExt: Backend {
    /// Every entry, in ascending key order, by paging through [`Backend::list`].
    async fn list_all(&self) -> Result<Vec<KeyInfo>> {
        const PAGE: usize = 1000;
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.list(after, PAGE).await?;
            out.extend(page.entries);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        (**self).get(key).await
    }
    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        (**self).put(key, value).await
    }
    async fn delete(&self, key: &CacheKey) -> Result<()> {
        (**self).delete(key).await
    }
    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        (**self).contains(key).await
    }
    async fn clear(&self) -> Result<()> {
        (**self).clear().await
    }
    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        (**self).list(after, limit).await
    }
    async fn usage(&self) -> Result<Usage> {
        (**self).usage().await
    }
    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        (**self).get_tail(key, len).await
    }
    async fn open_file(&self, key: &CacheKey) -> Result<Option<std::fs::File>> {
        (**self).open_file(key).await
    }
    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        (**self).shrink_to(max_bytes).await
    }
    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        (**self).try_lease(key, ttl, holder).await
    }
    async fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        (**self).pin(key, pinned).await
    }
}

/// The last `len` bytes of `value` (all of it when it is shorter), for
/// [`Backend::get_tail`].
pub fn tail(value: Bytes, len: u64) -> Bytes {
    let start = value
        .len()
        .saturating_sub(usize::try_from(len).unwrap_or(usize::MAX));
    value.slice(start..)
}

/// Builds a [`ListPage`] from entries sorted by key, taking those after `after`, at most `limit`.
///
/// A helper for backends that can only enumerate everything (such as an in-memory map).
pub fn page_from_sorted(sorted: &[KeyInfo], after: Option<CacheKey>, limit: usize) -> ListPage {
    let limit = limit.max(1);
    let start = match after {
        Some(after) => sorted.partition_point(|e| e.key <= after),
        None => 0,
    };
    let end = start.saturating_add(limit).min(sorted.len());
    let entries = sorted[start..end].to_vec();
    let next = if end < sorted.len() {
        entries.last().map(|e| e.key)
    } else {
        None
    };
    ListPage { entries, next }
}
