//! [`FsBackend`]: the [`Backend`] over the directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use warmcache_core::{
    Backend, CacheKey, Capabilities, KeyInfo, ListPage, Result, Usage, async_trait,
    maybe_spawn_blocking, page_from_sorted,
};

use crate::builder::FsBackendBuilder;
use crate::store::Store;

/// A directory of immutable entry files. See the [crate docs](crate).
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

    /// Deletes least recently used entries until the directory holds at most `max_bytes`
    /// (maintenance, such as `warmcache gc`). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// When the directory cannot be read or an entry cannot be deleted.
    pub async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        let store = Arc::clone(&self.store);
        maybe_spawn_blocking(move || store.shrink_to(max_bytes)).await
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

#[async_trait]
impl Backend for FsBackend {
    fn name(&self) -> &str {
        self.store.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_persistent(true)
            .with_capacity(Some(self.store.capacity()))
            .with_max_value_size(Some(self.store.max_value()))
            .with_local_files(self.offer_files)
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        let (store, key) = (Arc::clone(&self.store), *key);
        maybe_spawn_blocking(move || store.get(&key)).await
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        let (store, key) = (Arc::clone(&self.store), *key);
        maybe_spawn_blocking(move || store.put(&key, &value)).await
    }

    async fn delete(&self, key: &CacheKey) -> Result<()> {
        let (store, key) = (Arc::clone(&self.store), *key);
        maybe_spawn_blocking(move || store.delete(&key)).await
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        let (store, key) = (Arc::clone(&self.store), *key);
        maybe_spawn_blocking(move || store.contains(&key)).await
    }

    async fn clear(&self) -> Result<()> {
        let store = Arc::clone(&self.store);
        maybe_spawn_blocking(move || store.clear()).await
    }

    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        let store = Arc::clone(&self.store);
        let all = maybe_spawn_blocking(move || store.list_sorted()).await?;
        Ok(page_from_sorted(&all, after, limit))
    }

    async fn usage(&self) -> Result<Usage> {
        let store = Arc::clone(&self.store);
        maybe_spawn_blocking(move || store.usage()).await
    }

    /// The entry's file, opened read-only. It holds exactly what `get` returns, and stays
    /// valid (on Unix) even if the entry is evicted or replaced while it is open or mapped.
    async fn open_file(&self, key: &CacheKey) -> Result<Option<std::fs::File>> {
        if !self.offer_files {
            return Err(warmcache_core::Error::NotSupported {
                context: warmcache_core::Context::with_key(
                    self.name(),
                    warmcache_core::Op::OpenFile,
                    key,
                ),
            });
        }
        let (store, key) = (Arc::clone(&self.store), *key);
        maybe_spawn_blocking(move || store.open_file(&key)).await
    }
}
