//! Maintenance operations through the [`Backend`] trait: `shrink_to`, and `open_file` for
//! backends that hand out local files.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warmcache_core::{Backend, CacheKey, ErrorKind};

use crate::Harness;
use crate::budget::Budget;
use crate::failure::{CheckResult, Failure, PASSED, ensure, skipped};
use crate::observe::read_file;
use crate::values;

/// A shrink through [`Backend::shrink_to`] keeps what is in use: of ten equal entries (1,000
/// bytes, or a fortieth of a small capacity), the three read last (three times each) and the
/// one written last survive a shrink to four and a half entries' bytes, which evicts exactly
/// six; a shrink above the usage evicts nothing. Any policy that ranks by recency or by use
/// (least recently used, frequency, cost-aware) keeps those four. Skipped for backends without
/// `shrink_to`.
///
/// The check sleeps a few milliseconds between uses, for backends that record use by file time.
pub async fn shrink_keeps_recently_used(b: Arc<dyn Backend>) -> CheckResult {
    let pause = || std::thread::sleep(Duration::from_millis(5));
    let budget = Budget::of(&*b)?;
    // Asked first, on an empty store: a backend without shrink_to is skipped whatever else it
    // does.
    let evicted = match b
        .shrink_to(budget.capacity.unwrap_or(1 << 20).max(1 << 20))
        .await
    {
        Err(e) if e.kind() == ErrorKind::NotSupported => {
            return skipped("the backend does not offer shrink_to");
        }
        other => other?,
    };
    ensure!(
        evicted == 0,
        "a shrink of an empty store evicted {evicted} entries, expected none"
    );
    // Ten entries in at most a quarter of the capacity.
    let len = budget
        .len(1000)
        .min(budget.capacity.map_or(1000, |c| (c / 40) as usize));
    let keys: Vec<CacheKey> = (0..10).map(CacheKey::pseudo_random).collect();
    for key in &keys {
        b.put(key, Bytes::from(vec![7u8; len])).await?;
        pause();
    }
    let (recent, present) = use_recently(&*b, &budget, &keys, pause).await?;
    ensure!(
        present >= 4,
        "only {present} of ten {len}-byte entries (a quarter of the capacity at most) are left \
         before any shrink: the backend evicts far more than it must"
    );
    let evicted = b
        .shrink_to(budget.capacity.unwrap_or(1 << 20).max(1 << 20))
        .await?;
    ensure!(
        evicted == 0,
        "a shrink above the usage evicted {evicted} entries, expected none"
    );
    let target = (len * 9 / 2) as u64;
    let evicted = b.shrink_to(target).await?;
    ensure!(
        evicted == present - 4,
        "a shrink of {present} {len}-byte entries to {target} bytes evicted {evicted} entries, \
         expected {}",
        present - 4
    );
    let usage = b.usage().await?;
    ensure!(
        usage.bytes <= target && usage.entries == 4,
        "after the shrink usage() is {} entries and {} bytes, expected 4 entries within {target} \
         bytes",
        usage.entries,
        usage.bytes
    );
    for key in &recent {
        ensure!(
            b.contains(key).await?,
            "a recently used entry ({key}) was evicted by the shrink"
        );
    }
    PASSED
}

/// Reads the first three of `keys` three times each, in rounds (then the last was put most
/// recently): returns those of the four still there, the recently used ones, and how many of
/// `keys` are there.
async fn use_recently(
    b: &dyn Backend,
    budget: &Budget,
    keys: &[CacheKey],
    pause: impl Fn(),
) -> Result<(Vec<CacheKey>, u64), Failure> {
    // A bounded backend may evict early (the guide allows it): the check works with what is
    // there, and the three read last are the recently used ones among them.
    let mut recent = Vec::new();
    for round in 0..3 {
        for key in &keys[..3] {
            if b.get(key).await?.is_some() {
                if round == 0 {
                    recent.push(*key);
                }
            } else {
                ensure!(
                    budget.may_evict(),
                    "an entry is missing before the shrink, and the backend is unbounded"
                );
                recent.retain(|k| k != key);
            }
            pause();
        }
    }
    let mut present = 0u64;
    for key in keys {
        present += u64::from(b.contains(key).await?);
    }
    // The last one put is recently used too.
    if b.contains(&keys[9]).await? {
        recent.push(keys[9]);
    }
    Ok((recent, present))
}

/// What can be checked of "nobody can modify the handed-out file in place": the handle is not
/// writable, and the file is a regular file with one link that neither group nor others can
/// write.
fn handed_out_safely(mut file: &std::fs::File) -> Result<(), Failure> {
    use std::io::Write;
    ensure!(
        file.write(b"x").is_err(),
        "open_file handed out a handle that can write the entry (open it read-only)"
    );
    let meta = file.metadata().map_err(|e| {
        Failure(format!(
            "fstat of the file open_file handed out failed: {e}"
        ))
    })?;
    ensure!(
        meta.is_file(),
        "open_file handed out something other than a regular file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ensure!(
            meta.mode() & 0o022 == 0,
            "open_file handed out a file that group or others can write (mode {:o}): they \
             could change a mapping after it was verified. Create entry files without group \
             and other write bits whatever the umask (umask 002 leaves group write on): set \
             the mode when creating them, or fchmod before the rename",
            meta.mode() & 0o7777
        );
        ensure!(
            meta.nlink() == 1,
            "open_file handed out a file with {} links (expected 1)",
            meta.nlink()
        );
    }
    Ok(())
}

/// For backends that offer local files: the file `open_file` hands out holds exactly the bytes
/// `get` returns, is handed out read-only and unwritable by others, and is never changed in
/// place afterwards: after the key is overwritten and
/// then deleted, the file still reads as the value it was opened for. A missing key is
/// `Ok(None)`. Skipped for backends without `local_files`.
pub async fn open_file_matches_get(b: Arc<dyn Backend>) -> CheckResult {
    let k = crate::basic::key(800);
    if !b.capabilities().local_files {
        let len = crate::budget::Budget::of(&*b)?.len(100);
        b.put(&k, values::make(1, 1, len)).await?;
        return match b.open_file(&k).await {
            Err(e) if e.kind() == ErrorKind::NotSupported => {
                skipped("the backend does not offer local files")
            }
            Ok(Some(_)) => Err(Failure(
                "open_file hands out files, but capabilities() does not declare local_files, so \
                 no cache will ever ask for them: declare with_local_files(true)"
                    .into(),
            )),
            other => Err(Failure(format!(
                "a backend without local_files should answer open_file with \
                 Error::NotSupported (the default), got {other:?}"
            ))),
        };
    }
    ensure!(
        b.open_file(&k).await?.is_none(),
        "open_file of a missing key returned a file"
    );
    let first = values::make(1, 1, 10_000);
    b.put(&k, first.clone()).await?;
    let Some(file) = b.open_file(&k).await? else {
        return Err(Failure("open_file returned no file right after put".into()));
    };
    handed_out_safely(&file)?;
    let got = b.get(&k).await?.unwrap_or_default();
    let in_file = read_file(&file)?;
    ensure!(
        in_file == got && got == first,
        "open_file's bytes ({} bytes) differ from get's ({} bytes)",
        in_file.len(),
        got.len()
    );
    b.put(&k, values::make(2, 2, 7_000)).await?;
    ensure!(
        read_file(&file)? == first,
        "the file handed out changed when the key was overwritten (written in place?)"
    );
    b.delete(&k).await?;
    ensure!(
        read_file(&file)? == first,
        "the file handed out changed when the key was deleted"
    );
    ensure!(
        b.open_file(&k).await?.is_none(),
        "open_file of a deleted key returned a file"
    );
    PASSED
}

/// Pins ([`Backend::pin`]): of three entries, the pinned one survives `shrink_to(0)` (also
/// after the backend is reopened, for a persistent one) and a put over it keeps its pin, the
/// others go; unpinned, it goes too. Pinning a missing key returns `false` and creates nothing.
/// Where three values of three tenths of the capacity can be written (the backend is opened at
/// [`CHECK_CAPACITY`](crate::checks::CHECK_CAPACITY) where the harness can size it), pinning the
/// third, which would take the pinned entries over
/// [`max_pinned`](warmcache_core::backend::max_pinned) of it, is refused with
/// [`ErrorKind::Capacity`] and leaves it unpinned. Skipped for backends that do not declare
/// [`pins`](warmcache_core::Capabilities::pins).
pub fn pins_kept_from_eviction(harness: &dyn Harness, dir: &Path) -> CheckResult {
    let open = || {
        match harness.open_with_capacity(dir, crate::checks::CHECK_CAPACITY) {
            Some(opened) => opened,
            None => harness.open(dir),
        }
        .map_err(|e| Failure(format!("opening the backend failed: {e}")))
    };
    let runtime = crate::runner::runtime()?;
    let b = open()?;
    if !b.capabilities().pins {
        return skipped("the backend does not declare pins");
    }
    let persistent = b.capabilities().persistent;
    let keys: Vec<CacheKey> = (500..503).map(CacheKey::pseudo_random).collect();
    runtime.block_on(pin_and_shrink(&b, &keys))?;
    let b = if persistent {
        drop(b);
        let b = open()?;
        runtime.block_on(async {
            b.shrink_to(0).await?;
            ensure!(
                b.contains(&keys[0]).await?,
                "shrink_to(0) after a reopen took the pinned entry: the pin did not persist"
            );
            PASSED
        })?;
        b
    } else {
        b
    };
    runtime.block_on(unpin_and_refuse(&b, &keys))
}

/// Pins the first of `keys` among three entries and shrinks to nothing.
async fn pin_and_shrink(b: &Arc<dyn Backend>, keys: &[CacheKey]) -> CheckResult {
    let budget = Budget::of(&**b)?;
    let len = budget
        .len(1000)
        .min(budget.capacity.map_or(1000, |c| (c / 40) as usize));
    for key in keys {
        b.put(key, Bytes::from(vec![3u8; len])).await?;
    }
    ensure!(
        b.pin(&keys[0], true).await?,
        "pin of a present entry returned false"
    );
    let missing = CacheKey::pseudo_random(599);
    ensure!(
        !b.pin(&missing, true).await?,
        "pin of a missing key returned true"
    );
    ensure!(
        !b.contains(&missing).await?,
        "pinning a missing key created it"
    );
    b.shrink_to(0).await?;
    ensure!(
        b.contains(&keys[0]).await?,
        "shrink_to(0) took the pinned entry"
    );
    for key in &keys[1..] {
        ensure!(
            !b.contains(key).await?,
            "shrink_to(0) left an unpinned entry ({key})"
        );
    }
    let replaced = Bytes::from(vec![4u8; len]);
    b.put(&keys[0], replaced.clone()).await?;
    b.shrink_to(0).await?;
    ensure!(
        b.get(&keys[0]).await? == Some(replaced),
        "a put over a pinned entry lost its pin: shrink_to(0) took it"
    );
    PASSED
}

/// Unpins the first of `keys`, then refuses a pin over the share where values of three tenths
/// of the capacity can be written.
async fn unpin_and_refuse(b: &Arc<dyn Backend>, keys: &[CacheKey]) -> CheckResult {
    let budget = Budget::of(&**b)?;
    ensure!(
        b.pin(&keys[0], false).await?,
        "unpinning a present entry returned false"
    );
    b.shrink_to(0).await?;
    ensure!(
        !b.contains(&keys[0]).await?,
        "shrink_to(0) left an entry that was unpinned"
    );
    let Some(capacity) = budget.capacity else {
        return PASSED;
    };
    let share = capacity * 3 / 10;
    if share > budget.max_value || share > 1 << 20 {
        return PASSED;
    }
    let share = usize::try_from(share).unwrap_or(usize::MAX);
    for key in keys {
        b.put(key, Bytes::from(vec![5u8; share])).await?;
    }
    for key in keys {
        ensure!(
            b.contains(key).await?,
            "three values of three tenths of the capacity do not fit: {key} is gone"
        );
    }
    ensure!(
        b.pin(&keys[0], true).await?,
        "pin of a present entry returned false"
    );
    ensure!(
        b.pin(&keys[1], true).await?,
        "pin of a present entry returned false"
    );
    match b.pin(&keys[2], true).await {
        Err(e) if e.kind() == ErrorKind::Capacity => {}
        other => {
            return Err(Failure(format!(
                "pinning a third of three values of three tenths of the capacity (over {} of \
                 it) returned {other:?}, expected a Capacity error",
                warmcache_core::backend::MAX_PINNED_SHARE
            )));
        }
    }
    b.shrink_to(0).await?;
    ensure!(
        !b.contains(&keys[2]).await?,
        "a refused pin pinned the entry all the same: shrink_to(0) left it"
    );
    for key in &keys[..2] {
        b.pin(key, false).await?;
    }
    b.clear().await?;
    PASSED
}
