//! [`RocksDbBackend`]: the public handle on a database directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warmcache_core::Result;

use crate::builder::RocksDbBackendBuilder;
use crate::store::Store;

/// A bounded, persistent cache store on RocksDB. See the [crate docs](crate).
///
/// It implements [`BlockingBackend`](warmcache_core::backend::BlockingBackend), and through
/// it [`Backend`](warmcache_core::Backend).
#[derive(Debug, Clone)]
pub struct RocksDbBackend {
    pub(crate) store: Arc<Store>,
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

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.store.path()
    }
}
