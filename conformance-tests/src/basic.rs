//! Single-caller behaviour: round trips, missing keys, overwrite, delete, clear, keys that differ
//! in one byte, and reads after overwrites.

use std::sync::Arc;

use warmcache_core::{Backend, CacheKey, ErrorKind};

use crate::budget::Budget;
use crate::failure::{CheckResult, Failure, PASSED, ensure};
use crate::model::{Model, page_through};
use crate::observe::{self, describe, expect_value};
use crate::values;

/// A key for test number `n`.
pub fn key(n: u64) -> CacheKey {
    warmcache_core::KeyBuilder::new("conformance")
        .integer(n)
        .finish()
}

/// Values of 0 B, 1 B, 4 KiB, 1 MiB, 32 MiB and exactly `max_value_size` come back byte for byte
/// (through `get`, and through `open_file` where offered). Sizes above `max_value_size` must be
/// refused with a capacity error, and leave nothing stored.
pub async fn round_trip_sizes(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let mut sizes = vec![0u64, 1, 4 << 10, 1 << 20, 32 << 20];
    if budget.max_value <= 64 << 20 && !sizes.contains(&budget.max_value) {
        sizes.push(budget.max_value);
    }
    for (i, len) in sizes.into_iter().enumerate() {
        let k = key(100 + i as u64);
        let Ok(len) = usize::try_from(len) else {
            continue;
        };
        let v = values::make(i as u64, 1, len);
        let result = b.put(&k, v).await;
        if len as u64 > budget.max_value {
            ensure!(
                result
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::Capacity),
                "a put of {len} bytes, over max_value_size {}, should be refused with \
                 Error::Capacity, got {result:?}",
                budget.max_value
            );
            let got = observe::read(&b, &k).await?;
            ensure!(
                got.is_none(),
                "a refused put of {len} bytes left {} stored",
                describe(got.as_ref(), len)
            );
            continue;
        }
        result?;
        let got = observe::read(&b, &k).await?;
        expect_value(
            got.as_ref(),
            &format!("reading a value of {len} bytes right after its put"),
            (i as u64, 1),
            len,
        )?;
    }
    PASSED
}

/// A missing key is `Ok(None)` / `Ok(false)` (and no file), not an error.
pub async fn missing_key(b: Arc<dyn Backend>) -> CheckResult {
    let k = key(1);
    let got = observe::read(&b, &k).await?;
    ensure!(
        got.is_none(),
        "get of a key never written returned {}, expected None",
        describe(got.as_ref(), 0)
    );
    ensure!(
        !b.contains(&k).await?,
        "contains of a key never written returned true"
    );
    PASSED
}

/// A second put replaces the first, also with a shorter value, and usage counts only the second.
pub async fn overwrite(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let mut model = Model::new(&budget);
    let first = budget.len(5000);
    // Shorter than the first, within the declared limits, and long enough to identify.
    let second = budget.len(300).min(first - 1).max(values::MIN_LEN);
    model.put(&b, 2, 1, first).await?;
    model.put(&b, 2, 2, second).await?;
    model.check(&b, &budget, "after an overwrite").await?;
    PASSED
}

/// Delete removes a present key (it then reads as `None`, not as an empty value); deleting a
/// missing key is not an error.
pub async fn delete_present_and_missing(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let mut model = Model::new(&budget);
    model.put(&b, 3, 1, budget.len(500)).await?;
    model.put(&b, 5, 1, budget.len(700)).await?;
    model.delete(&b, 3).await?;
    model.check(&b, &budget, "after deleting key 3").await?;
    model.delete(&b, 3).await?;
    model.delete(&b, 4).await?;
    model
        .check(
            &b,
            &budget,
            "after deleting key 3 again and never-written key 4",
        )
        .await?;
    PASSED
}

/// `contains` agrees with `get` for present, never-written and deleted keys.
pub async fn contains(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let mut model = Model::new(&budget);
    for n in (0..20).step_by(2) {
        model.put(&b, n, 0, 32).await?;
    }
    for n in (0..20).step_by(4) {
        model.delete(&b, n).await?;
    }
    model.check(&b, &budget, "after puts and deletes").await?;
    for n in (1..20).step_by(2) {
        ensure!(
            !b.contains(&key(n)).await?,
            "contains(key {n}) is true for a key never written"
        );
    }
    PASSED
}

/// `clear` removes everything (each key then reads as `None`), usage and listing are empty, and
/// the backend stays usable.
pub async fn clear(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let len = budget.len(100);
    let count = budget.count(50, len);
    for n in 0..count {
        b.put(&key(n), values::make(n, 0, len)).await?;
    }
    b.clear().await?;
    let mut model = Model::new(&budget);
    for n in 0..count {
        let got = observe::read(&b, &key(n)).await?;
        ensure!(
            got.is_none(),
            "after clear, get(key {n}) returned {}, expected None",
            describe(got.as_ref(), len)
        );
        model.gone(n);
    }
    model.check(&b, &budget, "after clear").await?;
    model.put(&b, 1, 1, 64).await?;
    model
        .check(&b, &budget, "after a put that followed clear")
        .await?;
    PASSED
}

/// 10,000 small keys (fewer on a small bounded backend: a quarter of its capacity) can be
/// written, all read back, and are all listed and counted.
pub async fn many_small_keys(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let count = budget.count(10_000, 24);
    let mut model = Model::new(&budget);
    model.put_many(&b, (0..count).map(|n| (n, 7, 24))).await?;
    model
        .check(&b, &budget, &format!("after {count} puts of 24 bytes"))
        .await?;
    PASSED
}

/// Keys that differ from a base key in a single byte (each of the 32 positions in turn) are
/// distinct entries: each is written next to the base key, both read back as their own values,
/// and deleting it leaves the base key alone. Catches an index keyed by a prefix, a suffix or a
/// hash of part of the key.
pub async fn keys_differing_in_one_byte(b: Arc<dyn Backend>) -> CheckResult {
    let base_bytes = *key(900).as_bytes();
    let base = CacheKey::from_bytes(base_bytes);
    b.put(&base, values::make(900, 0, 64)).await?;
    for i in 0..32 {
        let mut bytes = base_bytes;
        bytes[i] ^= 0x01;
        let variant = CacheKey::from_bytes(bytes);
        let seq = i as u64 + 1;
        b.put(&variant, values::make(900, seq, 64)).await?;
        let what = format!("the key differing from the base key in byte {i}");
        let got = observe::read(&b, &variant).await?;
        expect_value(got.as_ref(), &what, (900, seq), 64)?;
        let got = observe::read(&b, &base).await?;
        expect_value(
            got.as_ref(),
            &format!("the base key, after a put of {what}"),
            (900, 0),
            64,
        )?;
        b.delete(&variant).await?;
        let got = observe::read(&b, &base).await?;
        expect_value(
            got.as_ref(),
            &format!("the base key, after a delete of {what}"),
            (900, 0),
            64,
        )?;
    }
    let listed = page_through(&b, 1000).await?;
    ensure!(
        listed.len() == 1 && listed[0].key == base,
        "after the 32 keys that differ from the base key in one byte were each put and deleted, \
         {} keys are listed, expected only the base key",
        listed.len()
    );
    PASSED
}

/// Overwrites made one after another: 100 of them, each followed by 10 reads that must all return
/// the value just written. A backend that returns the previous value in 2% of reads after an
/// overwrite passes this with probability 0.98^1000, below 2 in a billion.
pub async fn fresh_reads_after_overwrite(b: Arc<dyn Backend>) -> CheckResult {
    let k = key(950);
    for seq in 0..100u64 {
        b.put(&k, values::make(950, seq, 64)).await?;
        for read in 0..10 {
            let got = b.get(&k).await?;
            if values::identify(got.as_deref().unwrap_or_default(), 64) != Some((950, seq)) {
                return Err(Failure(format!(
                    "read {} after overwrite {seq} returned {}, expected the value just put \
                     (950, {seq}){}",
                    read + 1,
                    describe(got.as_ref(), 64),
                    if got.as_ref().and_then(|v| values::identify(v, 64))
                        == Some((950, seq.wrapping_sub(1)))
                    {
                        ": the previous value came back"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    PASSED
}

/// `get_tail` returns exactly the end of what `get` returns, for tails shorter than, as long
/// as, and longer than the value, and `None` for a missing key.
pub async fn tail_matches_get(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    for (n, len) in [
        (0u64, 0usize),
        (1, 1),
        (2, budget.len(300)),
        (3, budget.len(70_000)),
    ] {
        let k = key(40 + n);
        let value = values::make(40 + n, 1, len);
        b.put(&k, value.clone()).await?;
        for want in [0u64, 1, 48, 374, len as u64, len as u64 + 1, u64::MAX] {
            let got = b.get_tail(&k, want).await?;
            let start = len.saturating_sub(usize::try_from(want).unwrap_or(usize::MAX));
            let seen = match &got {
                None => "None (missing)".to_owned(),
                Some(t) if t.len() == len - start => format!("{} other bytes", t.len()),
                Some(t) => format!("{} bytes", t.len()),
            };
            ensure!(
                got.as_deref() == Some(&value[start..]),
                "get_tail(key, {want}) of a {len}-byte value returned {seen}, expected its last \
                 {} bytes",
                len - start
            );
        }
        b.delete(&k).await?;
    }
    let missing = b.get_tail(&key(49), 100).await?;
    ensure!(
        missing.is_none(),
        "get_tail of a key never written returned {}, expected None",
        describe(missing.as_ref(), 0)
    );
    PASSED
}
