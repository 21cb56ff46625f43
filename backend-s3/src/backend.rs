//! [`S3Backend`]: the [`Backend`] over any [`ObjectStore`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use warmcache_core::backend::{ClientRuntime, Lease, Spawner};
use warmcache_core::{
    Backend, CacheKey, Capabilities, Context, Error, KeyInfo, ListPage, Op, Result, Usage,
    async_trait,
};

use crate::builder::S3BackendBuilder;
use crate::error::map;
use crate::layout::{object_path, parse_key};
use crate::lease::lease_dir;

/// Requests in flight at once where this backend makes many for one operation (listing a
/// WebDAV store's directories, clearing one): each is a round trip to a server that may be
/// far away.
const IN_FLIGHT: usize = 16;

/// How the store is asked for the objects under the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// One listing of everything under the prefix (`list`, `list_with_offset`).
    Recursive,
    /// The fan-out directories, then each one's objects (`list_with_delimiter`): for WebDAV
    /// servers, which may refuse a listing of unbounded depth.
    ByDirectory,
}

/// A shared, persistent remote tier over an [`ObjectStore`]. See the [crate docs](crate).
#[derive(Debug)]
pub struct S3Backend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    pub(crate) name: String,
    /// Where the object store's futures run: object_store's HTTP clients need a Tokio
    /// reactor, and this backend's futures may be polled by any executor.
    pub(crate) runtime: ClientRuntime,
    pub(crate) multipart_threshold: usize,
    pub(crate) part_size: usize,
    pub(crate) ordered_listing: bool,
    pub(crate) listing: Listing,
    pub(crate) capabilities: Capabilities,
    pub(crate) max_value_size: u64,
}

impl S3Backend {
    /// Starts a builder for `url`, such as `s3://bucket/prefix`, `gs://bucket`, `az://container`,
    /// `https://dav.example.com/warmcache` (WebDAV), `file:///var/cache/warmcache` or
    /// `memory://`.
    pub fn builder(url: impl Into<String>) -> S3BackendBuilder {
        S3BackendBuilder::new(url)
    }

    /// Starts a builder over an object store the caller already has, with keys under `prefix`.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str) -> S3BackendBuilder {
        S3BackendBuilder::from_store(store, prefix)
    }

    /// The underlying object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The path prefix under which entries are stored.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The object path of `key`, for tools that inspect the bucket.
    pub fn object_path(&self, key: &CacheKey) -> Path {
        object_path(&self.prefix, key)
    }

    /// Lists one page of the prefix to check that the store is reachable, the bucket exists and
    /// the credentials work. Use it at start-up for an early, clear error.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the endpoint cannot be reached, [`Error::Config`] when access
    /// is denied, [`Error::Backend`] for other failures (such as a missing bucket).
    pub async fn check(&self) -> Result<()> {
        let store = Arc::clone(&self.store);
        let prefix = self.prefix.clone();
        let ctx = self.ctx(Op::Open, None);
        let listing = self.listing;
        self.spawn(ctx.clone(), async move {
            if listing == Listing::ByDirectory {
                return match store.list_with_delimiter(Some(&prefix)).await {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(map(e, ctx)),
                };
            }
            let mut stream = store.list(Some(&prefix));
            match stream.next().await {
                None | Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(map(e, ctx)),
            }
        })
        .await
    }

    fn ctx(&self, op: Op, key: Option<&CacheKey>) -> Context {
        match key {
            Some(k) => Context::with_key(self.name.clone(), op, k),
            None => Context::new(self.name.clone(), op),
        }
    }

    async fn spawn<T: Send + 'static>(
        &self,
        ctx: Context,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.spawner().spawn(ctx, fut).await
    }

    fn spawner(&self) -> Spawner {
        self.runtime.spawner()
    }

    /// Every entry after `after`, in key order.
    async fn list_after(
        &self,
        after: Option<CacheKey>,
        limit: Option<usize>,
    ) -> Result<Vec<KeyInfo>> {
        let store = Arc::clone(&self.store);
        let prefix = self.prefix.clone();
        let ctx = self.ctx(Op::List, None);
        let ordered = self.ordered_listing;
        if self.listing == Listing::ByDirectory {
            return self
                .spawn(ctx.clone(), by_directory(store, prefix, after, limit, ctx))
                .await;
        }
        self.spawn(ctx.clone(), async move {
            let stream = match after {
                Some(a) => store.list_with_offset(Some(&prefix), &object_path(&prefix, &a)),
                None => store.list(Some(&prefix)),
            };
            let mut stream = stream.map_err(|e| map(e, ctx.clone()));
            let mut out = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                let Some(key) = parse_key(&prefix, &meta.location) else {
                    tracing::debug!(path = %meta.location, "ignoring a foreign object under the prefix");
                    continue;
                };
                if after.is_some_and(|a| key <= a) {
                    continue;
                }
                out.push(KeyInfo {
                    key,
                    size: meta.size,
                });
                // Stores that list in lexicographic order (S3, GCS, Azure, memory) can stop
                // early: path order is key order in this layout.
                if ordered && limit.is_some_and(|l| out.len() > l) {
                    break;
                }
            }
            out.sort_by_key(|e| e.key);
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        let store = Arc::clone(&self.store);
        let path = self.object_path(key);
        let ctx = self.ctx(Op::Get, Some(key));
        let limit = self.max_value_size;
        self.spawn(ctx.clone(), async move {
            let result = match store.get(&path).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(map(e, ctx)),
            };
            // Decided from the response headers: the body of a planted huge object is never
            // downloaded (dropping the result closes the connection).
            if result.meta.size > limit {
                return Err(Error::corrupt(
                    ctx,
                    format!(
                        "object {path} is {} bytes, over the limit of {limit} bytes; not read",
                        result.meta.size
                    ),
                ));
            }
            match result.bytes().await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(map(e, ctx)),
            }
        })
        .await
    }

    /// One ranged request for the object's end (`bytes=-len`); where the store has no suffix
    /// requests (Azure) or refuses one, its size first, then a bounded range.
    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        let store = Arc::clone(&self.store);
        let path = self.object_path(key);
        let ctx = self.ctx(Op::GetTail, Some(key));
        self.spawn(ctx.clone(), async move {
            let ranged = |range| GetOptions {
                range: Some(range),
                ..GetOptions::default()
            };
            let result = match store.get_opts(&path, ranged(GetRange::Suffix(len))).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(_) => {
                    let size = match store.head(&path).await {
                        Ok(meta) => meta.size,
                        Err(object_store::Error::NotFound { .. }) => return Ok(None),
                        Err(e) => return Err(map(e, ctx)),
                    };
                    if size == 0 || len == 0 {
                        return Ok(Some(Bytes::new()));
                    }
                    let range = GetRange::Bounded(size.saturating_sub(len)..size);
                    match store.get_opts(&path, ranged(range)).await {
                        Ok(r) => r,
                        Err(object_store::Error::NotFound { .. }) => return Ok(None),
                        Err(e) => return Err(map(e, ctx)),
                    }
                }
            };
            match result.bytes().await {
                // Never more than asked for, whatever the server sent.
                Ok(bytes) => Ok(Some(warmcache_core::backend::tail(bytes, len))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(map(e, ctx)),
            }
        })
        .await
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        let store = Arc::clone(&self.store);
        let path = self.object_path(key);
        let ctx = self.ctx(Op::Put, Some(key));
        let (threshold, part_size) = (self.multipart_threshold, self.part_size);
        if value.len() as u64 > self.max_value_size {
            return Err(Error::Capacity {
                context: ctx,
                size: value.len() as u64,
                limit: self.max_value_size,
            });
        }
        self.spawn(ctx.clone(), async move {
            if value.len() <= threshold {
                store
                    .put(&path, PutPayload::from_bytes(value))
                    .await
                    .map_err(|e| map(e, ctx))?;
                return Ok(());
            }
            // Parts upload concurrently; the object appears only when the upload completes, so
            // readers see the old or the new value, never a part.
            let upload = store
                .put_multipart(&path)
                .await
                .map_err(|e| map(e, ctx.clone()))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
            let mut offset = 0;
            while offset < value.len() {
                if let Err(e) = writer.wait_for_capacity(4).await {
                    // An upload left open keeps its parts stored (and billed) until a bucket
                    // lifecycle rule, if any, removes them.
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(%path, error = %abort, "could not abort a failed multipart upload");
                    }
                    return Err(map(e, ctx));
                }
                let end = (offset + part_size).min(value.len());
                writer.put(value.slice(offset..end));
                offset = end;
            }
            // `finish` aborts the upload itself when a part or the completion fails.
            writer.finish().await.map_err(|e| map(e, ctx))?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, key: &CacheKey) -> Result<()> {
        let store = Arc::clone(&self.store);
        let path = self.object_path(key);
        let ctx = self.ctx(Op::Delete, Some(key));
        self.spawn(ctx.clone(), async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(map(e, ctx)),
            }
        })
        .await
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        let store = Arc::clone(&self.store);
        let path = self.object_path(key);
        let ctx = self.ctx(Op::Contains, Some(key));
        self.spawn(ctx.clone(), async move {
            match store.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(map(e, ctx)),
            }
        })
        .await
    }

    async fn clear(&self) -> Result<()> {
        let store = Arc::clone(&self.store);
        let prefix = self.prefix.clone();
        let ctx = self.ctx(Op::Clear, None);
        if self.listing == Listing::ByDirectory {
            let ours = self.list_after(None, None).await?;
            return self
                .spawn(ctx.clone(), async move {
                    // One request per object (WebDAV has no batch delete), a few at a time.
                    futures::stream::iter(ours)
                        .map(|entry| {
                            let (store, path) =
                                (Arc::clone(&store), object_path(&prefix, &entry.key));
                            async move {
                                match store.delete(&path).await {
                                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                                    Err(e) => Err(e),
                                }
                            }
                        })
                        .buffer_unordered(IN_FLIGHT)
                        .try_for_each(|()| futures::future::ready(Ok(())))
                        .await
                        .map_err(|e| map(e, ctx))
                })
                .await;
        }
        self.spawn(ctx.clone(), async move {
            // Only our own objects: anything else under the prefix is left alone.
            let ours = store
                .list(Some(&prefix))
                .try_filter_map({
                    let prefix = prefix.clone();
                    move |meta| {
                        let path = parse_key(&prefix, &meta.location).map(|_| meta.location);
                        futures::future::ready(Ok(path))
                    }
                })
                .boxed();
            store
                .delete_stream(ours)
                .try_for_each(|_| futures::future::ready(Ok(())))
                .await
                .or_else(|e| match e {
                    object_store::Error::NotFound { .. } => Ok(()),
                    e => Err(map(e, ctx)),
                })
        })
        .await
    }

    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        let limit = limit.max(1);
        let mut entries = self.list_after(after, Some(limit)).await?;
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.key)
        } else {
            None
        };
        Ok(ListPage { entries, next })
    }

    async fn usage(&self) -> Result<Usage> {
        let all = self.list_after(None, None).await?;
        Ok(Usage {
            entries: all.len() as u64,
            bytes: all.iter().map(|e| e.size).sum(),
        })
    }

    /// A generation object under `leases/<key>/` in the bucket, created only if absent (see the
    /// crate docs); it expires `ttl` after it was taken or last renewed.
    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        if !self.capabilities.coordinates {
            return Err(Error::NotSupported {
                context: self.ctx(Op::Lease, Some(key)),
            });
        }
        let lease = crate::lease::try_lease(
            Arc::clone(&self.store),
            lease_dir(&self.prefix, key),
            ttl,
            holder.to_owned(),
            self.spawner(),
            self.ctx(Op::Lease, Some(key)),
        )
        .await?;
        Ok(lease.map(|l| Box::new(l) as Box<dyn Lease>))
    }
}

/// Every entry after `after` in key order, listed one fan-out directory at a time from the one
/// `after` is in, stopping once more than `limit` are found.
async fn by_directory(
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    after: Option<CacheKey>,
    limit: Option<usize>,
    ctx: Context,
) -> Result<Vec<KeyInfo>> {
    let top = match store.list_with_delimiter(Some(&prefix)).await {
        Ok(top) => top,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(map(e, ctx)),
    };
    let first_fan = after.map(|a| a.to_hex()[..2].to_owned());
    let mut fans: Vec<Path> = top
        .common_prefixes
        .into_iter()
        .filter(|dir| {
            let name = dir.filename().unwrap_or_default();
            name.len() == 2
                && name.bytes().all(|b| b.is_ascii_hexdigit())
                && first_fan.as_deref().is_none_or(|f| name >= f)
        })
        .collect();
    fans.sort();
    // A few directories at a time, taken in order: a page needs the first ones only.
    let mut listings = futures::stream::iter(fans)
        .map(|fan| {
            let store = Arc::clone(&store);
            async move { store.list_with_delimiter(Some(&fan)).await }
        })
        .buffered(IN_FLIGHT);
    let mut out = Vec::new();
    while let Some(listed) = listings.next().await {
        let listed = match listed {
            Ok(listed) => listed,
            // Removed since the first listing (a concurrent clear).
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(map(e, ctx)),
        };
        let mut here: Vec<KeyInfo> = listed
            .objects
            .into_iter()
            .filter_map(|meta| {
                let key = parse_key(&prefix, &meta.location)?;
                let size = meta.size;
                after
                    .is_none_or(|a| key > a)
                    .then_some(KeyInfo { key, size })
            })
            .collect();
        here.sort_by_key(|e| e.key);
        out.extend(here);
        if limit.is_some_and(|l| out.len() > l) {
            break;
        }
    }
    Ok(out)
}
