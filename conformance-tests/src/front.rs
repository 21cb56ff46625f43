//! The [`Cache`] front over the backend under test: invalidation, key echo, schema versions,
//! single-flight and corruption recovery.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use warmcache_core::{
    Backend, BytesCodec, Cache, CacheKey, Codec, ComputeError, Integrity, Tier, Tiered,
};

use crate::failure::{CheckResult, Failure, PASSED, ensure, skipped};

/// The input of the test computation: like a compile, it depends on every field.
type Input = (String, u64, bool, Vec<u8>);

fn render(input: &Input) -> Result<Bytes, Infallible> {
    Ok(Bytes::from(format!("{input:?}")))
}

fn slow_render(input: &Input) -> Result<Bytes, Infallible> {
    std::thread::sleep(Duration::from_millis(100));
    render(input)
}

fn cache_over(b: &Arc<dyn Backend>, version: u32) -> Cache<Bytes, BytesCodec> {
    Cache::builder("conformance-front", BytesCodec)
        .version(version)
        .tiers(Tiered::builder().tier(Tier::new(Arc::clone(b))).build())
        .build()
}

/// Why the front checks cannot run on `b`: its largest value is smaller than the largest
/// entry they store (the test value in its envelope, as the cache seals it).
fn entries_do_not_fit(b: &Arc<dyn Backend>) -> Option<String> {
    let max = b.capabilities().max_value_size?;
    let input = ("module.wasm".to_owned(), u64::MAX, false, vec![255; 8]);
    let payload = render(&input).unwrap_or_default();
    let producer = BytesCodec.producer();
    let entry = Integrity::plain().seal(&CacheKey::from_bytes([0; 32]), 0, &producer, &payload);
    let needed = entry.len() as u64;
    (max < needed).then(|| {
        format!(
            "the backend's max_value_size ({max} bytes) is smaller than the cache entries this \
             check stores ({needed} bytes): a cache over it stores nothing"
        )
    })
}

fn base() -> Input {
    ("module.wasm".to_owned(), 2, false, vec![1, 2, 3])
}

/// Identical inputs hit (through the backend, with the live tier cleared); a change of any input
/// field is a miss and computes again.
pub async fn front_invalidation(b: Arc<dyn Backend>) -> CheckResult {
    if let Some(reason) = entries_do_not_fit(&b) {
        return skipped(reason);
    }
    let cache = cache_over(&b, 0);
    let first = cache.get_or_compute_async(&base(), render).await;
    ensure!(first.is_ok(), "first computation failed");
    cache.clear_live();
    let again = cache.get_or_compute_async(&base(), render).await;
    let stats = cache.stats();
    ensure!(
        stats.computes == 1 && stats.tier_hits == 1,
        "identical input did not hit the backend: {} computes, {} tier hits",
        stats.computes,
        stats.tier_hits
    );
    ensure!(
        first.ok() == again.ok(),
        "value read back differs from the computed one"
    );
    let variants: [Input; 4] = [
        ("other.wasm".to_owned(), 2, false, vec![1, 2, 3]),
        ("module.wasm".to_owned(), 3, false, vec![1, 2, 3]),
        ("module.wasm".to_owned(), 2, true, vec![1, 2, 3]),
        ("module.wasm".to_owned(), 2, false, vec![1, 2, 4]),
    ];
    for (i, v) in variants.iter().enumerate() {
        cache.clear_live();
        let value = cache
            .get_or_compute_async(v, render)
            .await
            .map_err(|e| Failure(e.to_string()))?;
        ensure!(
            cache.stats().computes == 2 + i as u64,
            "changing input field {i} hit a stale entry"
        );
        ensure!(
            value == render(v).unwrap_or_default(),
            "variant {i} got another input's value"
        );
    }
    PASSED
}

/// An entry stored under one key is never returned for another: a valid envelope copied to a
/// different key fails the key echo, counts as corrupt, and the value is recomputed.
pub async fn front_key_echo(b: Arc<dyn Backend>) -> CheckResult {
    if let Some(reason) = entries_do_not_fit(&b) {
        return skipped(reason);
    }
    let cache = cache_over(&b, 0);
    let a: Input = ("a.wasm".into(), 1, false, vec![]);
    let other: Input = ("b.wasm".into(), 1, false, vec![]);
    cache
        .get_or_compute_async(&a, render)
        .await
        .map_err(|e| Failure(e.to_string()))?;
    let (ka, kb) = (cache.key_for(&a), cache.key_for(&other));
    let stored = b.get(&ka).await?;
    let Some(stored) = stored else {
        return Err(Failure(
            "the cache did not store its entry in the backend".into(),
        ));
    };
    b.put(&kb, stored).await?;
    let fresh = cache_over(&b, 0);
    let value = fresh
        .get_or_compute_async(&other, render)
        .await
        .map_err(|e| Failure(e.to_string()))?;
    ensure!(
        value == render(&other).unwrap_or_default(),
        "a value stored under another key was returned"
    );
    let stats = fresh.stats();
    ensure!(
        stats.computes == 1,
        "the copied entry was not treated as a miss"
    );
    ensure!(
        stats.corrupt() == 1,
        "the key echo mismatch was not counted as corrupt"
    );
    PASSED
}

/// Bumping the caller's schema version is a miss for every entry stored under the old one.
pub async fn front_schema_version(b: Arc<dyn Backend>) -> CheckResult {
    if let Some(reason) = entries_do_not_fit(&b) {
        return skipped(reason);
    }
    let v1 = cache_over(&b, 1);
    v1.get_or_compute_async(&base(), render)
        .await
        .map_err(|e| Failure(e.to_string()))?;
    let v1_again = cache_over(&b, 1);
    v1_again
        .get_or_compute_async(&base(), render)
        .await
        .map_err(|e| Failure(e.to_string()))?;
    ensure!(v1_again.stats().computes == 0, "same version did not hit");
    let v2 = cache_over(&b, 2);
    v2.get_or_compute_async(&base(), render)
        .await
        .map_err(|e| Failure(e.to_string()))?;
    ensure!(
        v2.stats().computes == 1,
        "a version bump hit an entry of the old version"
    );
    PASSED
}

/// Sixteen threads asking for one cold key over this backend run one computation and all get its
/// value.
pub fn front_single_flight(b: Arc<dyn Backend>) -> CheckResult {
    if let Some(reason) = entries_do_not_fit(&b) {
        return skipped(reason);
    }
    let cache = Arc::new(cache_over(&b, 0));
    let input: Input = ("flight.wasm".into(), 9, true, vec![9]);
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let cache = Arc::clone(&cache);
            let barrier = Arc::clone(&barrier);
            let input = input.clone();
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_or_compute(&input, slow_render)
            })
        })
        .collect();
    let expected = render(&input).unwrap_or_default();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    // The computation here never panics: a panic is the backend's. Its own message (from the
    // caller that led) says why; waiters only learn that the leader panicked.
    let blame = |why: &str| {
        Failure(format!(
            "the backend panicked: {why} (the computation in this check cannot panic; a backend \
             whose futures need the caller's executor, such as a Tokio runtime, fails here: see \
             driven_by_block_on)"
        ))
    };
    if let Some(payload) = outcomes.iter().find_map(|o| o.as_ref().err()) {
        let why = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        return Err(blame(why));
    }
    for outcome in outcomes {
        let value = match outcome {
            Ok(Ok(value)) => value,
            Ok(Err(ComputeError::Panicked { .. })) => {
                return Err(blame("a caller waiting on the leader saw it panic"));
            }
            Ok(Err(e)) => return Err(Failure(e.to_string())),
            Err(_) => return Err(blame("(no message)")),
        };
        ensure!(value == expected, "a caller got a wrong value");
    }
    let computes = cache.stats().computes;
    ensure!(
        computes == 1,
        "16 concurrent callers ran {computes} computations"
    );
    PASSED
}

/// A stored value damaged in the backend is a counted miss: recomputed, and replaced by a good
/// entry, except in a shared backend, where it is left alone (it may be another node's).
pub async fn front_corruption_recovered(b: Arc<dyn Backend>) -> CheckResult {
    if let Some(reason) = entries_do_not_fit(&b) {
        return skipped(reason);
    }
    let cache = cache_over(&b, 0);
    let input = base();
    cache
        .get_or_compute_async(&input, render)
        .await
        .map_err(|e| Failure(e.to_string()))?;
    let k = cache.key_for(&input);
    let Some(stored) = b.get(&k).await? else {
        return Err(Failure(
            "the cache did not store its entry in the backend".into(),
        ));
    };
    let mut damaged = stored.to_vec();
    let middle = damaged.len() / 3;
    damaged[middle] ^= 0x10;
    let damaged = Bytes::from(damaged);
    b.put(&k, damaged.clone()).await?;
    let fresh = cache_over(&b, 0);
    let value = fresh
        .get_or_compute_async(&input, render)
        .await
        .map_err(|e| Failure(e.to_string()))?;
    ensure!(
        value == render(&input).unwrap_or_default(),
        "damaged entry decoded"
    );
    let stats = fresh.stats();
    ensure!(stats.computes == 1, "damaged entry was not recomputed");
    ensure!(
        stats.corrupt() == 1,
        "damaged entry was not counted as corrupt"
    );
    let healed = b.get(&k).await?.unwrap_or_default();
    if b.capabilities().shared {
        // In a shared store the entry may be another node's (sealed under another secret):
        // the cache counts it and leaves it alone.
        ensure!(
            healed == damaged,
            "the cache replaced or deleted an entry of a shared backend that failed verification"
        );
    } else {
        ensure!(
            Integrity::plain().open(&k, &healed).is_ok(),
            "the recomputed value did not replace the damaged entry"
        );
    }
    PASSED
}
