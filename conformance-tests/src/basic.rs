//! Single-caller behaviour: round trips, missing keys, overwrite, delete, listing, usage.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use warmcache_core::{Backend, BackendExt, CacheKey, ErrorKind, KeyInfo};

use crate::failure::{CheckResult, PASSED, ensure, skipped};
use crate::values;

/// A key for test number `n`.
pub fn key(n: u64) -> CacheKey {
    warmcache_core::KeyBuilder::new("conformance")
        .integer(n)
        .finish()
}

/// Values of 0 B, 1 B, 4 KiB, 1 MiB and 32 MiB come back byte for byte. Sizes above the backend's
/// `max_value_size` must be refused with a capacity error instead.
pub async fn round_trip_sizes(b: Arc<dyn Backend>) -> CheckResult {
    let max = b.capabilities().max_value_size;
    for (i, len) in [0usize, 1, 4 << 10, 1 << 20, 32 << 20]
        .into_iter()
        .enumerate()
    {
        let k = key(100 + i as u64);
        let v = values::make(i as u64, 1, len);
        let result = b.put(&k, v.clone()).await;
        if max.is_some_and(|m| len as u64 > m) {
            ensure!(
                result
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::Capacity),
                "put of {len} bytes over max_value_size {max:?} should be a capacity error, got {result:?}"
            );
            continue;
        }
        result?;
        let got = b.get(&k).await?;
        ensure!(
            got.is_some(),
            "value of {len} bytes missing right after put"
        );
        let got = got.unwrap_or_default();
        ensure!(
            got == v,
            "value of {len} bytes came back different ({} bytes)",
            got.len()
        );
    }
    PASSED
}

/// A missing key is `Ok(None)` / `Ok(false)`, not an error.
pub async fn missing_key(b: Arc<dyn Backend>) -> CheckResult {
    let k = key(1);
    ensure!(
        b.get(&k).await?.is_none(),
        "get of a missing key returned a value"
    );
    ensure!(
        !b.contains(&k).await?,
        "contains of a missing key returned true"
    );
    PASSED
}

/// A second put replaces the first, also with a shorter value.
pub async fn overwrite(b: Arc<dyn Backend>) -> CheckResult {
    let k = key(2);
    b.put(&k, values::make(2, 1, 5000)).await?;
    b.put(&k, values::make(2, 2, 300)).await?;
    let got = b.get(&k).await?.unwrap_or_default();
    ensure!(
        values::identify(&got, 300) == Some((2, 2)),
        "after overwrite, get returned {} bytes that are not the second value",
        got.len()
    );
    let usage = b.usage().await?;
    ensure!(
        usage.entries == 1,
        "overwrite left {} entries",
        usage.entries
    );
    ensure!(
        usage.bytes == 300,
        "overwrite left usage of {} bytes, expected 300",
        usage.bytes
    );
    PASSED
}

/// Delete removes a present key; deleting a missing key is not an error.
pub async fn delete_present_and_missing(b: Arc<dyn Backend>) -> CheckResult {
    let k = key(3);
    b.put(&k, Bytes::from_static(b"value")).await?;
    b.delete(&k).await?;
    ensure!(
        b.get(&k).await?.is_none(),
        "value still readable after delete"
    );
    ensure!(!b.contains(&k).await?, "contains true after delete");
    b.delete(&k).await?;
    b.delete(&key(4)).await?;
    PASSED
}

/// `contains` agrees with `get`.
pub async fn contains(b: Arc<dyn Backend>) -> CheckResult {
    for n in 0..20 {
        if n % 2 == 0 {
            b.put(&key(n), values::make(n, 0, 32)).await?;
        }
    }
    for n in 0..20 {
        let has = b.contains(&key(n)).await?;
        let got = b.get(&key(n)).await?.is_some();
        ensure!(has == (n % 2 == 0), "contains({n}) = {has}");
        ensure!(has == got, "contains({n}) = {has} but get found {got}");
    }
    PASSED
}

/// `clear` removes everything and the backend stays usable.
pub async fn clear(b: Arc<dyn Backend>) -> CheckResult {
    for n in 0..50 {
        b.put(&key(n), values::make(n, 0, 100)).await?;
    }
    b.clear().await?;
    for n in 0..50 {
        ensure!(b.get(&key(n)).await?.is_none(), "key {n} survived clear");
    }
    let usage = b.usage().await?;
    ensure!(
        usage.entries == 0 && usage.bytes == 0,
        "usage after clear: {usage:?}"
    );
    ensure!(
        b.list(None, 10).await?.entries.is_empty(),
        "list after clear not empty"
    );
    b.put(&key(1), Bytes::from_static(b"again")).await?;
    ensure!(b.contains(&key(1)).await?, "put after clear did not land");
    PASSED
}

/// Listing (paged, in ascending key order) and usage agree with the puts and deletes made.
pub async fn list_and_usage_consistent(b: Arc<dyn Backend>) -> CheckResult {
    let mut model = BTreeMap::new();
    for n in 0..120u64 {
        let len = (n as usize * 37) % 900;
        b.put(&key(n), values::make(n, 0, len)).await?;
        model.insert(key(n), len as u64);
    }
    for n in (0..120u64).step_by(3) {
        b.delete(&key(n)).await?;
        model.remove(&key(n));
    }
    // Overwrite some with another size.
    for n in (1..120u64).step_by(7) {
        b.put(&key(n), values::make(n, 1, 10)).await?;
        model.insert(key(n), 10);
    }
    let expected: Vec<KeyInfo> = model
        .iter()
        .map(|(k, s)| KeyInfo { key: *k, size: *s })
        .collect();
    let mut paged = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = b.list(after, 7).await?;
        ensure!(
            page.entries.len() <= 7,
            "page of {} entries with limit 7",
            page.entries.len()
        );
        pages += 1;
        ensure!(pages < 1000, "listing does not terminate");
        paged.extend(page.entries);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    ensure!(
        paged == expected,
        "paged listing differs from the puts and deletes made: got {} entries, expected {}",
        paged.len(),
        expected.len()
    );
    let all = b.list_all().await?;
    ensure!(all == expected, "list_all differs from the model");
    let usage = b.usage().await?;
    let bytes: u64 = model.values().sum();
    ensure!(
        usage.entries == model.len() as u64 && usage.bytes == bytes,
        "usage {usage:?}, expected {} entries and {bytes} bytes",
        model.len()
    );
    PASSED
}

/// 10,000 small keys can be written, all read back, and are all listed.
pub async fn many_small_keys(b: Arc<dyn Backend>) -> CheckResult {
    const N: u64 = 10_000;
    for n in 0..N {
        b.put(&key(n), values::make(n, 7, 24)).await?;
    }
    for n in 0..N {
        let got = b.get(&key(n)).await?.unwrap_or_default();
        ensure!(
            values::identify(&got, 24) == Some((n, 7)),
            "key {n} of {N} lost or wrong"
        );
    }
    let usage = b.usage().await?;
    ensure!(
        usage.entries == N,
        "usage counts {} entries, expected {N}",
        usage.entries
    );
    ensure!(
        b.list_all().await?.len() as u64 == N,
        "listing does not hold {N} keys"
    );
    PASSED
}

/// A bounded backend never holds more than its capacity, evicts to make room, and refuses a value
/// over its limit with a capacity error. Skipped for unbounded backends.
pub async fn capacity_bound(b: Arc<dyn Backend>) -> CheckResult {
    let caps = b.capabilities();
    let Some(capacity) = caps.capacity else {
        return skipped("the backend is unbounded (no capacity in its capabilities)");
    };
    let limit = caps.max_value_size.unwrap_or(capacity).min(capacity);
    let chunk = (capacity / 8).min(limit).max(1) as usize;
    let total = capacity.saturating_mul(5) / 2;
    let puts = (total / chunk as u64).clamp(4, 400);
    for n in 0..puts {
        b.put(&key(n), values::make(n, 0, chunk)).await?;
        let usage = b.usage().await?;
        ensure!(
            usage.bytes <= capacity,
            "after {} puts of {chunk} bytes usage is {} bytes, over the capacity of {capacity}",
            n + 1,
            usage.bytes
        );
    }
    let latest = key(puts - 1);
    ensure!(
        b.contains(&latest).await?,
        "the most recent put was evicted at once"
    );
    let oversize = limit.saturating_add(1);
    if oversize <= 256 << 20 {
        let err = b
            .put(&key(9999), values::make(9, 9, oversize as usize))
            .await;
        ensure!(
            err.as_ref().is_err_and(|e| e.kind() == ErrorKind::Capacity),
            "a value of {oversize} bytes (over the limit of {limit}) should be refused with a capacity error, got {err:?}"
        );
        let message = err.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        ensure!(
            message.contains(b.name()),
            "capacity error does not name the backend: {message}"
        );
    }
    PASSED
}
