//! For stores that offer both eviction policies ([`Eviction`]): the check that the cost policy
//! keeps what least-recently-used would drop.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warmcache_core::backend::Eviction;
use warmcache_core::{Backend, CacheKey, Compression, Integrity, Origin};

use crate::failure::{CheckResult, PASSED, ensure};

/// Opens the store in a directory with a byte capacity and an eviction policy.
pub type OpenEvicting<'a> =
    &'a dyn Fn(&Path, u64, Eviction) -> warmcache_core::Result<Arc<dyn Backend>>;

/// An envelope of about 1,000 bytes recording `compute_ms` of compute, as the cache writes it.
fn costing(key: &CacheKey, compute_ms: u64) -> Bytes {
    let origin = Origin::new(1, "conformance").compute_ms(compute_ms);
    Integrity::plain().seal_origin(key, &origin, &[7u8; 900], Compression::None)
}

/// Four envelopes of equal size go, one after another, into a store with room for three: the
/// first records a minute of compute, the others 5 ms. Evicting least recently used, the
/// fourth put takes the first; evicting by cost, it takes a cheap one and keeps the first. The
/// check pauses between puts, for stores that record use by file time.
pub async fn eviction_by_cost(open: OpenEvicting<'_>) -> CheckResult {
    let keys: Vec<CacheKey> = (0..4).map(CacheKey::pseudo_random).collect();
    let capacity = 3 * costing(&keys[0], 0).len() as u64;
    for (policy, kept) in [(Eviction::Lru, false), (Eviction::Cost, true)] {
        let dir = tempfile::tempdir()
            .map_err(|e| crate::Failure(format!("cannot create a directory: {e}")))?;
        let store = open(dir.path(), capacity, policy)?;
        store.put(&keys[0], costing(&keys[0], 60_000)).await?;
        for key in &keys[1..] {
            std::thread::sleep(Duration::from_millis(20));
            store.put(key, costing(key, 5)).await?;
        }
        ensure!(
            store.contains(&keys[0]).await? == kept,
            "evicting by {policy}, the oldest entry (a minute of compute) was {}",
            if kept { "evicted" } else { "kept" }
        );
        ensure!(
            store.contains(&keys[3]).await?,
            "evicting by {policy}, the entry just written was evicted"
        );
    }
    PASSED
}
