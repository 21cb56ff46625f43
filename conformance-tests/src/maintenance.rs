//! Checks for maintenance operations that backends offer outside the [`Backend`] trait.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use warmcache_core::{Backend, CacheKey};

use crate::failure::{CheckResult, ensure};

/// Checks a least-recently-used shrink, such as `shrink_to` on the file, redb and RocksDB
/// backends: of ten 1,000-byte entries, the three read last must survive a shrink to 4,500
/// bytes, which must evict exactly six; a shrink above the usage must evict nothing.
///
/// `shrink(max_bytes)` runs the backend's shrink and returns how many entries it evicted. The
/// check sleeps a few milliseconds between uses, for backends that record use by file time.
pub async fn shrink_keeps_recently_used<F, Fut>(backend: &dyn Backend, shrink: F) -> CheckResult
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = warmcache_core::Result<u64>>,
{
    let pause = || std::thread::sleep(Duration::from_millis(5));
    let keys: Vec<CacheKey> = (0..10).map(CacheKey::pseudo_random).collect();
    for key in &keys {
        backend.put(key, Bytes::from(vec![7u8; 1000])).await?;
        pause();
    }
    for key in &keys[..3] {
        ensure!(
            backend.get(key).await?.is_some(),
            "an entry is missing before the shrink"
        );
        pause();
    }
    let evicted = shrink(1 << 20).await?;
    ensure!(
        evicted == 0,
        "a shrink above the usage evicted {evicted} entries"
    );
    let evicted = shrink(4500).await?;
    ensure!(
        evicted == 6,
        "a shrink to 4,500 bytes evicted {evicted} entries, expected 6"
    );
    let usage = backend.usage().await?;
    ensure!(
        usage.bytes <= 4500 && usage.entries == 4,
        "after the shrink: {} entries, {} bytes",
        usage.entries,
        usage.bytes
    );
    for key in keys[..3].iter().chain(&keys[9..]) {
        ensure!(
            backend.contains(key).await?,
            "a recently used entry ({key}) was evicted"
        );
    }
    Ok(())
}
