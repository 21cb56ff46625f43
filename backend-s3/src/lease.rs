//! Leases in the bucket: the object store backend's
//! [`Lease`](warmcache_core::backend::Lease), built on conditional creates only
//! (`PutMode::Create`: `If-None-Match: *` on S3; GCS, Azure, `file://` and `memory://` have it
//! too), so it works on every store object_store offers.
//!
//! A key's lease is a chain of generations, `prefix/leases/<64 hex>/<generation>`, each object
//! holding who took it and until when. Taking the lease creates the generation after the newest
//! one there is, and only when that one has expired or is gone: of every node that saw the same
//! newest generation, exactly one creates the next. The holder rewrites its own generation to
//! renew it, deletes it to release it, and deletes older ones when it takes over.
//!
//! Expiry compares the holder's deadline with the reader's clock: hosts sharing a bucket need
//! clocks that agree within a small part of the ttl (NTP does). A release racing a takeover can
//! let two nodes hold a lease at once; that costs one computation more, never a wrong entry.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use warmcache_core::backend::Lease;
use warmcache_core::{CacheKey, Context, Result, async_trait};

use crate::backend::Spawner;
use crate::error::map;

/// Where `key`'s lease generations live under `prefix`.
pub(crate) fn lease_dir(prefix: &Path, key: &CacheKey) -> Path {
    prefix.clone().join("leases").join(key.to_hex())
}

fn generation_path(dir: &Path, generation: u64) -> Path {
    dir.clone().join(format!("{generation:020}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The body of a generation: a small text any operator can read.
fn body(holder: &str, until_ms: u64) -> PutPayload {
    let holder: String = holder
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    PutPayload::from(format!(
        "warmcache lease 1\nholder: {holder}\nuntil_ms: {until_ms}\n"
    ))
}

/// The deadline written in a generation's body; `None` when it is not one of ours, which then
/// counts as expired (it cannot be renewed by anyone who understands it).
fn until_of(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let mut lines = text.lines();
    (lines.next()? == "warmcache lease 1").then_some(())?;
    lines
        .find_map(|l| l.strip_prefix("until_ms: "))
        .and_then(|v| v.trim().parse().ok())
}

/// A generation this process created.
#[derive(Debug)]
pub(crate) struct BucketLease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    holder: String,
    ttl: Duration,
    spawner: Spawner,
    context: Context,
}

/// Takes the lease of the key whose generations live in `dir`, or `Ok(None)` when a live
/// generation is there or another node created the next one first.
pub(crate) async fn try_lease(
    store: Arc<dyn ObjectStore>,
    dir: Path,
    ttl: Duration,
    holder: String,
    spawner: Spawner,
    context: Context,
) -> Result<Option<BucketLease>> {
    let ctx = context.clone();
    let inner = Arc::clone(&store);
    let found = spawner
        .spawn(ctx.clone(), async move {
            let listed: Vec<_> = inner
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|e| map(e, ctx.clone()))?;
            let mut generations: Vec<u64> = listed
                .iter()
                .filter_map(|m| m.location.filename()?.parse().ok())
                .collect();
            generations.sort_unstable();
            let Some(&newest) = generations.last() else {
                return Ok(Some((dir, 0, generations)));
            };
            match inner.get(&generation_path(&dir, newest)).await {
                Ok(found) => {
                    let bytes = found.bytes().await.map_err(|e| map(e, ctx.clone()))?;
                    if until_of(&bytes).is_some_and(|until| until > now_ms()) {
                        return Ok(None);
                    }
                }
                // Released between the listing and the read.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(map(e, ctx)),
            }
            Ok(Some((dir, newest + 1, generations)))
        })
        .await?;
    let Some((dir, next, older)) = found else {
        return Ok(None);
    };
    let path = generation_path(&dir, next);
    let until = now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
    let created = {
        let (store, path, ctx) = (Arc::clone(&store), path.clone(), context.clone());
        let payload = body(&holder, until);
        spawner
            .spawn(ctx.clone(), async move {
                let opts = PutOptions::from(PutMode::Create);
                match store.put_opts(&path, payload, opts).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(map(e, ctx)),
                }
            })
            .await?
    };
    if !created {
        return Ok(None);
    }
    // Generations before ours are expired or released: tidy them away (best effort).
    if !older.is_empty() {
        let (store, dir) = (Arc::clone(&store), dir.clone());
        let _ = spawner
            .spawn(context.clone(), async move {
                for generation in older {
                    let _ = store.delete(&generation_path(&dir, generation)).await;
                }
                Ok(())
            })
            .await;
    }
    Ok(Some(BucketLease {
        store,
        path,
        holder,
        ttl,
        spawner,
        context,
    }))
}

#[async_trait]
impl Lease for BucketLease {
    async fn renew(&self) -> Result<()> {
        let until =
            now_ms().saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX));
        let (store, path, ctx) = (
            Arc::clone(&self.store),
            self.path.clone(),
            self.context.clone(),
        );
        let payload = body(&self.holder, until);
        self.spawner
            .spawn(ctx.clone(), async move {
                store
                    .put(&path, payload)
                    .await
                    .map(|_| ())
                    .map_err(|e| map(e, ctx))
            })
            .await
    }

    async fn release(&self) -> Result<()> {
        let (store, path, ctx) = (
            Arc::clone(&self.store),
            self.path.clone(),
            self.context.clone(),
        );
        self.spawner
            .spawn(ctx.clone(), async move {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(map(e, ctx)),
                }
            })
            .await
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.ttl / 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_strangers_count_as_expired() {
        let payload = body("host\nwith newline pid 7", 1234);
        let bytes: Vec<u8> = payload.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(until_of(&bytes), Some(1234));
        assert!(
            std::str::from_utf8(&bytes)
                .unwrap()
                .contains("holder: hostwith newline pid 7\n")
        );
        assert_eq!(until_of(b"something else\nuntil_ms: 99\n"), None);
        assert_eq!(until_of(&[0xff, 0xfe]), None);
    }
}
