//! [`RedbBackend`]: the public handle on a database file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warmcache_core::Result;
use warmcache_core::backend::maybe_spawn_blocking;

use crate::builder::RedbBackendBuilder;
use crate::store::Store;

/// A single-file, persistent, bounded cache store on redb. See the [crate docs](crate).
///
/// It implements [`BlockingBackend`](warmcache_core::backend::BlockingBackend), and through
/// it [`Backend`](warmcache_core::Backend).
#[derive(Debug, Clone)]
pub struct RedbBackend {
    pub(crate) store: Arc<Store>,
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
        let store = Arc::clone(self.store());
        maybe_spawn_blocking(move || store.flush_touches()).await
    }
}
