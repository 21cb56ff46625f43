//! [`FsBackend`]: the [`Backend`] over the directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use std::fs::File;

use warmcache_core::backend::{BlockingBackend, Lease, maybe_spawn_blocking};
use warmcache_core::{
    CacheKey, Capabilities, Context, Error, KeyInfo, ListPage, Op, Result, Usage,
};

use crate::builder::FsBackendBuilder;
use crate::store::Store;

/// A directory of immutable entry files. See the [crate docs](crate).
///
/// It implements [`BlockingBackend`], and through it [`Backend`](warmcache_core::Backend).
#[derive(Debug, Clone)]
pub struct FsBackend {
    store: Arc<Store>,
    offer_files: bool,
}

impl FsBackend {
    /// Starts a builder for the cache directory `root`.
    pub fn builder(root: impl Into<PathBuf>) -> FsBackendBuilder {
        FsBackendBuilder::new(root)
    }

    /// Opens (or creates) the cache directory `root` with the default options.
    ///
    /// # Errors
    ///
    /// See [`FsBackendBuilder::open`].
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        FsBackendBuilder::new(root).open()
    }

    pub(crate) fn from_store(store: Store, offer_files: bool) -> Self {
        Self {
            store: Arc::new(store),
            offer_files,
        }
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// Why users other than this one can write the directory (checked when it was opened), or
    /// `None`. Such a tier reports [`Capabilities::shared`]: its entries may be anyone's, so
    /// only a secret makes them trustworthy, and entries that fail verification in it are left
    /// alone rather than deleted.
    pub fn writable_by_others(&self) -> Option<&str> {
        self.store.exposure()
    }

    /// Runs an eviction pass now: if the directory holds more than the capacity (for example
    /// after other processes wrote to it), deletes least recently used entries. Returns how many.
    ///
    /// # Errors
    ///
    /// When the directory cannot be read or an entry cannot be deleted.
    pub async fn evict(&self) -> Result<u64> {
        let store = Arc::clone(&self.store);
        maybe_spawn_blocking(move || store.evict(None)).await
    }

    /// Every entry with its size and when it was last used (written, or read at most
    /// `touch_interval` ago), sorted by key.
    ///
    /// # Errors
    ///
    /// When the directory cannot be read.
    pub async fn entries_with_use(&self) -> Result<Vec<(KeyInfo, SystemTime)>> {
        let store = Arc::clone(&self.store);
        maybe_spawn_blocking(move || store.entries_with_use()).await
    }
}

impl BlockingBackend for FsBackend {
    fn name(&self) -> &str {
        self.store.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.store
            .limits()
            .capabilities()
            .with_persistent(true)
            .with_shared(self.store.exposure().is_some())
            .with_local_files(self.offer_files)
            .with_coordinates(!self.store.is_read_only())
            .with_pins(!self.store.is_read_only())
    }

    fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        self.store.get(key)
    }

    /// Reads only the end of the entry's file.
    fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        self.store.get_tail(key, len)
    }

    fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        self.store.put(key, &value)
    }

    fn delete(&self, key: &CacheKey) -> Result<()> {
        self.store.delete(key)
    }

    fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.store.contains(key)
    }

    fn clear(&self) -> Result<()> {
        self.store.clear()
    }

    fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        self.store.list_page(after, limit)
    }

    fn usage(&self) -> Result<Usage> {
        self.store.usage()
    }

    /// The entry's file, opened read-only. It holds exactly what `get` returns, and stays
    /// valid (on Unix) even if the entry is evicted or replaced while it is open or mapped:
    /// entries are written to a new file and renamed into place, never modified in place.
    fn open_file(&self, key: &CacheKey) -> Result<Option<File>> {
        if !self.offer_files {
            return Err(Error::NotSupported {
                context: Context::with_key(self.name(), Op::OpenFile, key),
            });
        }
        self.store.open_file(key)
    }

    fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        self.store.shrink_to(max_bytes)
    }

    /// An empty file `pins/<key>` in the directory, honoured by every process's eviction.
    fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        self.store.pin(key, pinned)
    }

    /// An exclusive lock on `locks/<key>` in the directory, between every process (and every
    /// backend in this one) using it. Freed by the kernel when the holder dies, so `ttl` is not
    /// needed; it is never renewed.
    fn try_lease(
        &self,
        key: &CacheKey,
        _ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        if self.store.is_read_only() {
            return Err(Error::NotSupported {
                context: crate::lock::lease_context(self.name(), key),
            });
        }
        let lease = crate::lock::try_lock(self.store.root(), key, holder, || {
            crate::lock::lease_context(self.name(), key)
        })?;
        Ok(lease.map(|l| Box::new(l) as Box<dyn Lease>))
    }
}
