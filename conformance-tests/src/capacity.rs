//! The capacity bound of a bounded backend, measured by what it can still return, not by what
//! its own accounting reports.

use std::path::Path;
use std::sync::Arc;

use warmcache_core::{Backend, ErrorKind};

use crate::Harness;
use crate::basic::key;
use crate::budget::Budget;
use crate::failure::{CheckResult, Failure, PASSED, ensure, skipped};
use crate::observe::{self, describe, expect_value};
use crate::values;

/// The capacity the capacity check asks a [`Harness`] for, when the harness can size the
/// backend ([`Harness::open_with_capacity`]).
pub const CHECK_CAPACITY: u64 = 1 << 20;

/// A bounded backend, written with three times its capacity in values of mixed sizes: after
/// every put the value just put reads back (it is never the one evicted), and the values it still
/// holds (the keys `contains` reports, and at the end the values `get` returns) never total more
/// than its capacity plus its declared slack; `usage` agrees with them; a value over its limit
/// is refused with a capacity error naming the backend, and not stored. Skipped for unbounded
/// backends.
///
/// The backend is opened with [`Harness::open_with_capacity`] (capacity [`CHECK_CAPACITY`])
/// where the harness offers it, otherwise with [`Harness::open`] at the capacity it declares.
pub fn capacity_bound(harness: &dyn Harness, dir: &Path) -> CheckResult {
    let b = match harness.open_with_capacity(dir, CHECK_CAPACITY) {
        Some(opened) => opened,
        None => harness.open(dir),
    }
    .map_err(|e| Failure(format!("opening the backend failed: {e}")))?;
    crate::runner::runtime()?.block_on(bound(b))
}

async fn bound(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let Some(capacity) = budget.capacity else {
        return skipped("the backend is unbounded (no capacity in its capabilities)");
    };
    let allowed = capacity.saturating_add(budget.slack);
    let limit = budget.max_value.min(capacity);
    let size = |n: u64| -> usize {
        let divisor = [8, 32, 13][(n % 3) as usize];
        (capacity / divisor).clamp(64, limit) as usize
    };
    let average = (size(0) + size(1) + size(2)) as u64 / 3;
    let puts = (capacity.saturating_mul(3) / average.max(1)).clamp(8, 200);
    let mut written = Vec::new();
    for n in 0..puts {
        let len = size(n);
        b.put(&key(n), values::make(n, 0, len)).await?;
        let got = observe::read(&b, &key(n)).await?;
        expect_value(
            got.as_ref(),
            &format!("put {} of {puts} ({len} bytes) read right after it", n + 1),
            (n, 0),
            len,
        )?;
        written.push(len as u64);
        let mut held = 0u64;
        for (m, len) in written.iter().enumerate() {
            if b.contains(&key(m as u64)).await? {
                held += len;
            }
        }
        ensure!(
            held <= allowed,
            "after {} puts the backend still holds {held} bytes (the values contains() reports), \
             over its capacity of {capacity} bytes plus its declared slack of {} bytes",
            n + 1,
            budget.slack
        );
    }
    let mut held = (0u64, 0u64);
    for (m, len) in written.iter().enumerate() {
        let got = observe::read(&b, &key(m as u64)).await?;
        if let Some(value) = &got {
            ensure!(
                values::identify(value, *len as usize) == Some((m as u64, 0)),
                "after the puts, key {m} holds {}",
                describe(got.as_ref(), *len as usize)
            );
            held = (held.0 + 1, held.1 + len);
        }
    }
    ensure!(
        held.1 <= allowed,
        "after {puts} puts get still returns {} values of {} bytes in total, over the capacity \
         of {capacity} bytes plus the declared slack of {} bytes (entries dropped from the \
         accounting but still stored?)",
        held.0,
        held.1,
        budget.slack
    );
    let usage = b.usage().await?;
    ensure!(
        (usage.entries, usage.bytes) == held,
        "after {puts} puts usage() reports {} entries and {} bytes, but get returns {} values of \
         {} bytes",
        usage.entries,
        usage.bytes,
        held.0,
        held.1
    );
    refuses_oversize(&*b, limit).await?;
    PASSED
}

/// A value one byte over `limit` is refused with a capacity error naming the backend, and not
/// stored (checked when the value is small enough to make).
async fn refuses_oversize(b: &dyn Backend, limit: u64) -> Result<(), Failure> {
    let oversize = limit.saturating_add(1);
    if oversize <= 256 << 20 {
        let k = key(9999);
        let err = b.put(&k, values::make(9, 9, oversize as usize)).await;
        ensure!(
            err.as_ref().is_err_and(|e| e.kind() == ErrorKind::Capacity),
            "a value of {oversize} bytes (over the limit of {limit}) should be refused with \
             Error::Capacity, got {err:?}"
        );
        let message = err.map(|_| String::new()).unwrap_or_else(|e| e.to_string());
        ensure!(
            message.contains(b.name()),
            "the capacity error does not name the backend ({:?}): {message}",
            b.name()
        );
        ensure!(
            b.get(&k).await?.is_none(),
            "the refused value of {oversize} bytes was stored anyway"
        );
    }
    Ok(())
}
