//! Maintenance operations through the [`Backend`] trait: `shrink_to`, and `open_file` for
//! backends that hand out local files.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warmcache_core::{Backend, CacheKey, ErrorKind};

use crate::failure::{CheckResult, Failure, PASSED, ensure, skipped};
use crate::values;

/// A least-recently-used shrink through [`Backend::shrink_to`]: of ten 1,000-byte entries, the
/// three read last and the one written last survive a shrink to 4,500 bytes, which evicts exactly
/// six; a shrink above the usage evicts nothing. Skipped for backends without `shrink_to`.
///
/// The check sleeps a few milliseconds between uses, for backends that record use by file time.
pub async fn shrink_keeps_recently_used(b: Arc<dyn Backend>) -> CheckResult {
    let pause = || std::thread::sleep(Duration::from_millis(5));
    let keys: Vec<CacheKey> = (0..10).map(CacheKey::pseudo_random).collect();
    for key in &keys {
        b.put(key, Bytes::from(vec![7u8; 1000])).await?;
        pause();
    }
    for key in &keys[..3] {
        ensure!(
            b.get(key).await?.is_some(),
            "an entry is missing before the shrink"
        );
        pause();
    }
    let evicted = match b.shrink_to(1 << 20).await {
        Err(e) if e.kind() == ErrorKind::NotSupported => {
            return skipped("the backend does not offer shrink_to");
        }
        other => other?,
    };
    ensure!(
        evicted == 0,
        "a shrink above the usage evicted {evicted} entries, expected none"
    );
    let evicted = b.shrink_to(4500).await?;
    ensure!(
        evicted == 6,
        "a shrink to 4,500 bytes evicted {evicted} entries, expected 6"
    );
    let usage = b.usage().await?;
    ensure!(
        usage.bytes <= 4500 && usage.entries == 4,
        "after the shrink usage() is {} entries and {} bytes, expected 4 entries within 4,500 bytes",
        usage.entries,
        usage.bytes
    );
    for key in keys[..3].iter().chain(&keys[9..]) {
        ensure!(
            b.contains(key).await?,
            "a recently used entry ({key}) was evicted by the shrink"
        );
    }
    PASSED
}

fn read_all(mut file: &std::fs::File) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut out))
        .map_err(|e| Failure(format!("reading the file open_file handed out failed: {e}")))?;
    Ok(out)
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
             could change a mapping after it was verified",
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
    if !b.capabilities().local_files {
        return skipped("the backend does not offer local files");
    }
    let k = crate::basic::key(800);
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
    let in_file = read_all(&file)?;
    ensure!(
        in_file == got && got == first,
        "open_file's bytes ({} bytes) differ from get's ({} bytes)",
        in_file.len(),
        got.len()
    );
    b.put(&k, values::make(2, 2, 7_000)).await?;
    ensure!(
        read_all(&file)? == first,
        "the file handed out changed when the key was overwritten (written in place?)"
    );
    b.delete(&k).await?;
    ensure!(
        read_all(&file)? == first,
        "the file handed out changed when the key was deleted"
    );
    ensure!(
        b.open_file(&k).await?.is_none(),
        "open_file of a deleted key returned a file"
    );
    PASSED
}
