//! [`RedbBackend`]: the [`Backend`] implementation over the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use warmcache_core::{
    Backend, CacheKey, Capabilities, ListPage, Result, Usage, async_trait, maybe_spawn_blocking,
};

use crate::builder::RedbBackendBuilder;
use crate::store::Store;

/// A single-file, persistent, bounded cache store on redb. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct RedbBackend {
    store: Arc<Store>,
}

impl RedbBackend {
    /// Starts a [`RedbBackendBuilder`] for the database file at `path`.
    pub fn builder(path: impl Into<PathBuf>) -> RedbBackendBuilder {
        RedbBackendBuilder::new(path)
    }

    /// Opens (or creates) the database at `path` with the default options.
    ///
    /// # Errors
    ///
    /// See [`RedbBackendBuilder::open`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        RedbBackendBuilder::new(path).open()
    }

    pub(crate) fn from_store(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Writes the read recency remembered in memory now, instead of with the next batch.
    ///
    /// # Errors
    ///
    /// When the write transaction fails.
    pub async fn flush_recency(&self) -> Result<()> {
        let store = Arc::clone(&self.store);
        maybe_spawn_blocking(move || store.flush_touches()).await
    }

    /// Deletes least recently used entries until the database holds at most `max_bytes` of
    /// values (maintenance, such as `warmcache gc`; the file itself does not shrink, its free
    /// pages are reused). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// When the write transaction fails.
    pub async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        let store = Arc::clone(&self.store);
        maybe_spawn_blocking(move || store.shrink_to(max_bytes)).await
    }
}

#[async_trait]
impl Backend for RedbBackend {
    fn name(&self) -> &str {
        self.store.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_persistent(true)
            .with_capacity(Some(self.store.capacity()))
            .with_max_value_size(Some(self.store.max_value()))
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
        maybe_spawn_blocking(move || store.list(after, limit)).await
    }

    async fn usage(&self) -> Result<Usage> {
        Ok(self.store.usage())
    }
}
