//! Listing: paged listing and usage agree with the puts and deletes made, and the edge cases of
//! the paging contract of [`Backend::list`].

use std::collections::BTreeMap;
use std::sync::Arc;

use warmcache_core::{Backend, CacheKey, KeyInfo};

use crate::basic::key;
use crate::budget::Budget;
use crate::failure::{CheckResult, Failure, PASSED, ensure};
use crate::model::{Model, listing_difference, page_through};
use crate::values;

/// Listing (paged by 7, in ascending key order) and usage agree with the puts, deletes and
/// overwrites made, sizes included.
pub async fn list_and_usage_consistent(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let count = budget.count(120, 450);
    let len = |n: u64, m: usize| budget.len((n as usize * m) % 900);
    let mut model = Model::new(&budget);
    for n in 0..count {
        model.put(&b, n, 0, len(n, 37)).await?;
    }
    for n in (0..count).step_by(3) {
        model.delete(&b, n).await?;
    }
    for n in (1..count).step_by(7) {
        model.put(&b, n, 1, len(n, 11)).await?;
    }
    let held = model
        .check(&b, &budget, "after puts, deletes and overwrites")
        .await?;
    let paged = page_through(&b, 7).await?;
    let whole = page_through(&b, 100_000).await?;
    let names: BTreeMap<CacheKey, u64> = (0..count).map(|n| (key(n), n)).collect();
    if let Some(difference) = listing_difference(&whole, &paged, &names) {
        return Err(Failure(format!(
            "listing in pages of 7 differs from listing in one page: {difference}"
        )));
    }
    ensure!(
        paged.len() as u64 == held.entries,
        "{} entries listed in pages of 7, {} returned by get",
        paged.len(),
        held.entries
    );
    PASSED
}

/// The edges of the paging contract: an empty store lists nothing; `limit` 0 is treated as 1;
/// `after` may be a key that is not stored; after the greatest key the page is empty without
/// `next`; pages of one walk every key once.
pub async fn list_paging_edges(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let empty = b.list(None, 10).await?;
    ensure!(
        empty.entries.is_empty() && empty.next.is_none(),
        "list(None, 10) on an empty store returned {} entries and next {:?}, expected an empty \
         page without next",
        empty.entries.len(),
        empty.next
    );
    // Six sizes, all within the largest value the backend accepts.
    let base = budget.len(64) - 5;
    let all: Vec<CacheKey> = (0..6).map(|n| key(1000 + n)).collect();
    for (i, k) in all.iter().enumerate() {
        b.put(k, values::make(1000 + i as u64, 0, base + i)).await?;
    }
    // A bounded backend may evict early (the guide allows it): the edges are checked on what
    // is there.
    let mut stored = Vec::new();
    for k in &all {
        if b.contains(k).await? {
            stored.push(*k);
        }
    }
    ensure!(
        stored.len() >= 3 || !budget.may_evict(),
        "only {} of six values of {base} to {} bytes are left in an otherwise empty store: the \
         backend evicts far more than it must",
        stored.len(),
        base + 5
    );
    ensure!(
        stored.len() == all.len() || budget.may_evict(),
        "{} of six keys put are missing, and the backend is unbounded",
        all.len() - stored.len()
    );
    stored.sort();
    check_edges(&*b, &stored).await?;
    let ones = page_through(&b, 1).await?;
    let expected: Vec<KeyInfo> = stored
        .iter()
        .map(|k| {
            let i = (0..6).position(|n| key(1000 + n) == *k).unwrap_or(0);
            KeyInfo {
                key: *k,
                size: (base + i) as u64,
            }
        })
        .collect();
    let names: BTreeMap<CacheKey, u64> = (0..6).map(|n| (key(1000 + n), 1000 + n)).collect();
    if let Some(difference) = listing_difference(&expected, &ones, &names) {
        return Err(Failure(format!(
            "listing in pages of 1 differs from the keys put (and still there): {difference}"
        )));
    }
    PASSED
}

/// The edges of paging over `stored` (sorted, at least three keys): a limit of 0, a start
/// between keys, after the greatest key, and after the greatest possible key.
async fn check_edges(b: &dyn Backend, stored: &[CacheKey]) -> Result<(), Failure> {
    let zero = b.list(None, 0).await?;
    ensure!(
        zero.entries.len() == 1,
        "list(None, 0) returned {} entries; a limit of 0 is treated as 1 (the smallest key)",
        zero.entries.len()
    );
    ensure!(
        zero.entries[0].key == stored[0],
        "list(None, 0) returned one entry, but not the smallest key: {}, expected {} (a page \
         holds the smallest keys after `after`)",
        zero.entries[0].key,
        stored[0]
    );
    ensure!(
        zero.next == Some(stored[0]),
        "list(None, 0) returned next {:?}, expected the key of its one entry",
        zero.next
    );
    // A key between the second and third stored keys that is not itself stored.
    let between = (0..10_000_000)
        .map(CacheKey::pseudo_random)
        .find(|k| *k > stored[1] && *k < stored[2])
        .ok_or_else(|| Failure("no key between two stored keys".into()))?;
    let from_between = b.list(Some(between), 100).await?;
    let keys: Vec<CacheKey> = from_between.entries.iter().map(|e| e.key).collect();
    ensure!(
        keys == stored[2..],
        "list(after = a key that is not stored, 100) returned {} entries, expected the {} keys \
         greater than it",
        keys.len(),
        stored.len() - 2
    );
    let after_last = b.list(stored.last().copied(), 100).await?;
    ensure!(
        after_last.entries.is_empty() && after_last.next.is_none(),
        "list(after = the greatest key, 100) returned {} entries and next {:?}, expected an \
         empty page without next",
        after_last.entries.len(),
        after_last.next
    );
    let beyond = b.list(Some(CacheKey::from_bytes([0xff; 32])), 100).await?;
    ensure!(
        beyond.entries.is_empty() && beyond.next.is_none(),
        "list(after = ff..ff, 100) returned {} entries and next {:?}, expected an empty page \
         without next",
        beyond.entries.len(),
        beyond.next
    );
    Ok(())
}
