//! [`BlockingBackend`]: the synchronous form of [`Backend`] for file and database stores, and
//! the one adapter that makes any of them a [`Backend`].

use std::fs::File;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::spawn::maybe_spawn_blocking;
use super::{Backend, Capabilities, Lease, ListPage, Usage};
use crate::error::{Context, Error, Op, Result};
use crate::key::CacheKey;

/// A store whose operations block the calling thread (files, embedded databases). Implement
/// this instead of [`Backend`]: every type that implements it (and is cheap to clone, such as a
/// handle around an `Arc`) is a [`Backend`] whose futures run each operation through
/// [`maybe_spawn_blocking`], on Tokio's blocking pool when a runtime is current and inline
/// otherwise, so they work under any executor.
///
/// The contract is [`Backend`]'s, method for method. Call the synchronous methods by their
/// full path (`BlockingBackend::get(&store, &key)`) where both traits are in scope.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::{Arc, Mutex};
/// use warmcache_core::backend::{BlockingBackend, page_from_sorted};
/// use warmcache_core::{Backend, CacheKey, Capabilities, KeyInfo, ListPage, Result, Usage};
/// use warmcache_core::bytes::Bytes;
///
/// #[derive(Debug, Clone, Default)]
/// struct MapStore(Arc<Mutex<BTreeMap<CacheKey, Bytes>>>);
///
/// impl BlockingBackend for MapStore {
///     fn name(&self) -> &str { "map" }
///     fn capabilities(&self) -> Capabilities { Capabilities::new() }
///     fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
///         Ok(self.0.lock().unwrap().get(key).cloned())
///     }
///     fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
///         self.0.lock().unwrap().insert(*key, value);
///         Ok(())
///     }
///     fn delete(&self, key: &CacheKey) -> Result<()> {
///         self.0.lock().unwrap().remove(key);
///         Ok(())
///     }
///     fn contains(&self, key: &CacheKey) -> Result<bool> {
///         Ok(self.0.lock().unwrap().contains_key(key))
///     }
///     fn clear(&self) -> Result<()> {
///         self.0.lock().unwrap().clear();
///         Ok(())
///     }
///     fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
///         let all: Vec<KeyInfo> = self.0.lock().unwrap().iter()
///             .map(|(k, v)| KeyInfo { key: *k, size: v.len() as u64 }).collect();
///         Ok(page_from_sorted(&all, after, limit))
///     }
///     fn usage(&self) -> Result<Usage> {
///         let map = self.0.lock().unwrap();
///         Ok(Usage { entries: map.len() as u64, bytes: map.values().map(|v| v.len() as u64).sum() })
///     }
/// }
///
/// let backend: Arc<dyn Backend> = Arc::new(MapStore::default());
/// let key = CacheKey::from_bytes([1; 32]);
/// futures::executor::block_on(backend.put(&key, Bytes::from_static(b"v")))?;
/// assert!(futures::executor::block_on(backend.contains(&key))?);
/// # Ok::<(), warmcache_core::Error>(())
/// ```
pub trait BlockingBackend: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// See [`Backend::name`].
    fn name(&self) -> &str;
    /// See [`Backend::capabilities`].
    fn capabilities(&self) -> Capabilities;
    /// See [`Backend::get`].
    fn get(&self, key: &CacheKey) -> Result<Option<Bytes>>;
    /// See [`Backend::put`].
    fn put(&self, key: &CacheKey, value: Bytes) -> Result<()>;
    /// See [`Backend::delete`].
    fn delete(&self, key: &CacheKey) -> Result<()>;
    /// See [`Backend::contains`].
    fn contains(&self, key: &CacheKey) -> Result<bool>;
    /// See [`Backend::clear`].
    fn clear(&self) -> Result<()>;
    /// See [`Backend::list`].
    fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage>;
    /// See [`Backend::usage`].
    fn usage(&self) -> Result<Usage>;
    /// See [`Backend::get_tail`]. Default: the tail of [`get`](Self::get).
    fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        Ok(self.get(key)?.map(|value| super::tail(value, len)))
    }
    /// See [`Backend::open_file`]. Default: not supported.
    fn open_file(&self, key: &CacheKey) -> Result<Option<File>> {
        Err(Error::NotSupported {
            context: Context::with_key(self.name(), Op::OpenFile, key),
        })
    }
    /// See [`Backend::shrink_to`]. Default: not supported.
    fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        let _ = max_bytes;
        Err(Error::NotSupported {
            context: Context::new(self.name(), Op::Shrink),
        })
    }
    /// See [`Backend::try_lease`]. Default: not supported.
    fn try_lease(
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
    /// See [`Backend::pin`]. Default: not supported.
    fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        let _ = pinned;
        Err(Error::NotSupported {
            context: Context::with_key(self.name(), Op::Pin, key),
        })
    }
}

/// Runs one blocking operation of `store` off the async executor.
async fn run<S: BlockingBackend, T: Send + 'static>(
    store: &S,
    op: impl FnOnce(&S) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    maybe_spawn_blocking(move || op(&store)).await
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: BlockingBackend> Backend for S {
    fn name(&self) -> &str {
        BlockingBackend::name(self)
    }

    fn capabilities(&self) -> Capabilities {
        BlockingBackend::capabilities(self)
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        let key = *key;
        run(self, move |s| BlockingBackend::get(s, &key)).await
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        let key = *key;
        run(self, move |s| BlockingBackend::put(s, &key, value)).await
    }

    async fn delete(&self, key: &CacheKey) -> Result<()> {
        let key = *key;
        run(self, move |s| BlockingBackend::delete(s, &key)).await
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        let key = *key;
        run(self, move |s| BlockingBackend::contains(s, &key)).await
    }

    async fn clear(&self) -> Result<()> {
        run(self, BlockingBackend::clear).await
    }

    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        run(self, move |s| BlockingBackend::list(s, after, limit)).await
    }

    async fn usage(&self) -> Result<Usage> {
        run(self, BlockingBackend::usage).await
    }

    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        let key = *key;
        run(self, move |s| BlockingBackend::get_tail(s, &key, len)).await
    }

    async fn open_file(&self, key: &CacheKey) -> Result<Option<File>> {
        let key = *key;
        run(self, move |s| BlockingBackend::open_file(s, &key)).await
    }

    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        run(self, move |s| BlockingBackend::shrink_to(s, max_bytes)).await
    }

    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        let (key, holder) = (*key, holder.to_owned());
        run(self, move |s| {
            BlockingBackend::try_lease(s, &key, ttl, &holder)
        })
        .await
    }

    async fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        let key = *key;
        run(self, move |s| BlockingBackend::pin(s, &key, pinned)).await
    }
}
