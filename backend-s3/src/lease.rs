//! Leases in the bucket: the object store backend's
//! [`Lease`](warmcache_core::backend::Lease), built on conditional creates only
//! (`PutMode::Create`: `If-None-Match: *` on S3; GCS, Azure, `file://` and `memory://` have it
//! too), so it works on every store object_store offers.
//!
//! A key's lease is a chain of generations, `prefix/leases/<64 hex>/<generation>`, each object
//! holding who took it and until when. Taking the lease creates the generation after the newest
//! one there is, and only when that one has expired or was released: of every node that saw the
//! same newest generation, exactly one creates the next.
//!
//! Each generation is written by its holder only, and the newest is never deleted (a release
//! marks it released), so generation numbers never start over: a path names one lease for
//! good. A holder writes only its own generation: a stale holder (paused past its ttl while
//! another took over) changes nothing for the new one, and its renewal, which first checks
//! that its generation is still the newest, reports the loss. The taker deletes the older generations.
//!
//! Expiry compares the holder's deadline with the reader's clock: hosts sharing a bucket need
//! clocks that agree within a small part of the ttl (NTP does). A deadline is believed for at
//! most [`MAX_TTLS`] of the reader's ttl after the generation was last written (the store's
//! timestamp), so a generation planted with a deadline far ahead holds a key only that long.
//! A release or renewal racing a takeover can let two nodes compute at once; that costs one
//! computation more, never a wrong entry.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use warmcache_core::backend::Lease;
use warmcache_core::{CacheKey, Context, Error, Result, async_trait};

use crate::error::map;
use warmcache_core::backend::Spawner;

/// A generation's deadline is believed for at most this many of the reader's ttl after the
/// generation was last written; a live holder rewrites it every third of a ttl.
pub(crate) const MAX_TTLS: u32 = 3;

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

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The body of a generation: a small text any operator can read. A released one has deadline 0.
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

/// The generations in `dir`, oldest first (names that are not generation numbers are ignored).
async fn generations(store: &dyn ObjectStore, dir: &Path, ctx: &Context) -> Result<Vec<u64>> {
    let listed: Vec<_> = store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(|e| map(e, ctx.clone()))?;
    let mut generations: Vec<u64> = listed
        .iter()
        .filter_map(|m| m.location.filename()?.parse().ok())
        .collect();
    generations.sort_unstable();
    Ok(generations)
}

/// A generation this process created.
#[derive(Debug)]
pub(crate) struct BucketLease {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    generation: u64,
    holder: String,
    ttl: Duration,
    spawner: Spawner,
    context: Context,
}

/// The generation a new lease on `dir` takes, and the older generations there; `None` while
/// the newest is held.
async fn free_generation(
    store: &dyn ObjectStore,
    dir: &Path,
    ttl: Duration,
    ctx: &Context,
) -> Result<Option<(u64, Vec<u64>)>> {
    let generations = generations(store, dir, ctx).await?;
    let Some(&newest) = generations.last() else {
        return Ok(Some((0, generations)));
    };
    match store.get(&generation_path(dir, newest)).await {
        Ok(found) => {
            let written = u64::try_from(found.meta.last_modified.timestamp_millis()).unwrap_or(0);
            let bytes = found.bytes().await.map_err(|e| map(e, ctx.clone()))?;
            let believed = written.saturating_add(ms(ttl * MAX_TTLS));
            if until_of(&bytes).is_some_and(|until| until.min(believed) > now_ms()) {
                return Ok(None);
            }
        }
        // Tidied away by a taker between the listing and the read.
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(map(e, ctx.clone())),
    }
    let next = newest.checked_add(1).ok_or_else(|| {
        Error::corrupt(
            ctx.clone(),
            format!(
                "lease generation {newest} is the last there can be (not written by warmcache); \
                 remove {dir} to use leases for this key again"
            ),
        )
    })?;
    Ok(Some((next, generations)))
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
    let found = {
        let (store, dir, ctx) = (Arc::clone(&store), dir.clone(), context.clone());
        spawner
            .spawn(context.clone(), async move {
                free_generation(store.as_ref(), &dir, ttl, &ctx).await
            })
            .await?
    };
    let Some((next, older)) = found else {
        return Ok(None);
    };
    let path = generation_path(&dir, next);
    let until = now_ms().saturating_add(ms(ttl));
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
        dir,
        generation: next,
        holder,
        ttl,
        spawner,
        context,
    }))
}

impl BucketLease {
    /// Rewrites this lease's own generation with deadline `until_ms`. With `check`, only while
    /// it is the newest (`Ok(false)` then, and nothing is written): after a takeover it is not,
    /// or it is gone.
    async fn rewrite(&self, until_ms: u64, check: bool) -> Result<bool> {
        let (store, dir, ctx) = (
            Arc::clone(&self.store),
            self.dir.clone(),
            self.context.clone(),
        );
        let generation = self.generation;
        let payload = body(&self.holder, until_ms);
        self.spawner
            .spawn(ctx.clone(), async move {
                if check
                    && generations(store.as_ref(), &dir, &ctx).await?.last() != Some(&generation)
                {
                    return Ok(false);
                }
                // Unconditional, but on a path no other lease ever uses: racing a takeover it
                // can at worst leave an old generation behind, which the next taker removes.
                store
                    .put(&generation_path(&dir, generation), payload)
                    .await
                    .map(|_| true)
                    .map_err(|e| map(e, ctx))
            })
            .await
    }
}

#[async_trait]
impl Lease for BucketLease {
    async fn renew(&self) -> Result<()> {
        let until = now_ms().saturating_add(ms(self.ttl));
        if self.rewrite(until, true).await? {
            return Ok(());
        }
        Err(Error::Locked {
            context: self.context.clone(),
            detail: format!(
                "lease generation {} was lost: it expired and another holder took the key over",
                self.generation
            ),
        })
    }

    /// Marks the generation released (deadline 0) rather than deleting it, so the next
    /// generation number is never one a stale holder still thinks it holds. A stale holder's
    /// release rewrites only its own, older generation, which no taker reads.
    async fn release(&self) -> Result<()> {
        self.rewrite(0, false).await.map(|_| ())
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
