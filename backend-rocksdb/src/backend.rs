//! [`RocksDbBackend`]: the [`Backend`] over the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use warmcache_core::{
    Backend, CacheKey, Capabilities, ListPage, Result, Usage, async_trait, maybe_spawn_blocking,
};

use crate::builder::RocksDbBackendBuilder;
use crate::store::Store;

/// A bounded, persistent cache store on RocksDB. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct RocksDbBackend {
    store: Arc<Store>,
}

impl RocksDbBackend {
    /// Starts a builder for the database directory `path`.
    pub fn builder(path: impl Into<PathBuf>) -> RocksDbBackendBuilder {
        RocksDbBackendBuilder::new(path)
    }

    /// Opens (or creates) the database at `path` with the default options.
    ///
    /// # Errors
    ///
    /// See [`RocksDbBackendBuilder::open`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        RocksDbBackendBuilder::new(path).open()
    }

    pub(crate) fn from_store(store: Store) -> Self {
        Self {
            store: Arc::new(store),
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Deletes least recently used entries until the values total at most `max_bytes`
    /// (maintenance, such as `warmcache gc`). Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// When the database is read-only or the write fails.
    pub async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        let store = Arc::clone(&self.store);
        maybe_spawn_blocking(move || store.shrink_to(max_bytes)).await
    }
}

#[async_trait]
impl Backend for RocksDbBackend {
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
