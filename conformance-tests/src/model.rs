//! What a check wrote, and the comparison of that with what the backend really holds: the values
//! it returns, its listing and its usage. Holdings are measured by reading, never taken from the
//! backend's own accounting.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use warmcache_core::{Backend, CacheKey, KeyInfo, Usage};

use crate::budget::Budget;
use crate::failure::Failure;
use crate::observe;
use crate::values;

/// One value a check wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// The check's number for the key, for messages.
    pub(crate) n: u64,
    /// The test value's identity.
    pub(crate) id: (u64, u64),
    /// Its length.
    pub(crate) len: usize,
}

/// Keys a check wrote (their latest values) and keys it deleted.
#[derive(Debug)]
pub(crate) struct Model {
    live: BTreeMap<CacheKey, Written>,
    deleted: BTreeMap<CacheKey, u64>,
    /// Read each put back at once: on a bounded backend, where a lost write could later pass
    /// for an eviction, this is what catches it.
    read_back: bool,
}

/// Above this many keys, [`Model::check`] asks `contains` for every 16th key only (it still
/// reads every one), which keeps the 10,000-key check affordable on a remote store.
const CONTAINS_EVERY_KEY_UP_TO: usize = 256;

/// How many operations on distinct keys [`Model::put_many`] and [`Model::check`] keep in
/// flight: over a link with 3 ms round trips, 10,000 keys read one after another take 30 s.
/// Results are taken in key order, so a failure is the same one a sequential run reports.
const IN_FLIGHT: usize = 16;

/// What the backend was found to hold of a [`Model`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// Entries it returned.
    pub(crate) entries: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
    /// Entries written and not deleted that it no longer returned (evicted).
    pub(crate) evicted: u64,
    /// The check's numbers of the keys it returned.
    pub(crate) present: BTreeSet<u64>,
}

impl Model {
    /// An empty model for a backend with `budget`.
    pub(crate) fn new(budget: &Budget) -> Self {
        Self {
            live: BTreeMap::new(),
            deleted: BTreeMap::new(),
            read_back: budget.may_evict(),
        }
    }

    /// Puts test value `(n, seq)` of `len` bytes under `key(n)` and reads it back at once: a
    /// put that returned `Ok` must be readable right after, even on a bounded backend (which
    /// must not evict what it was just given).
    pub(crate) async fn put(
        &mut self,
        b: &Arc<dyn Backend>,
        n: u64,
        seq: u64,
        len: usize,
    ) -> Result<(), Failure> {
        self.put_many(b, [(n, seq, len)]).await
    }

    /// [`put`](Self::put) for each `(n, seq, len)`, a few at a time; the keys must be distinct.
    /// The first failure in the given order is reported.
    pub(crate) async fn put_many(
        &mut self,
        b: &Arc<dyn Backend>,
        values: impl IntoIterator<Item = (u64, u64, usize)>,
    ) -> Result<(), Failure> {
        let read_back = self.read_back;
        let written: Vec<(CacheKey, Written)> = stream::iter(values)
            .map(|(n, seq, len)| put_one(b, read_back, n, seq, len))
            .buffered(IN_FLIGHT)
            .try_collect()
            .await?;
        for (key, w) in written {
            self.deleted.remove(&key);
            self.live.insert(key, w);
        }
        Ok(())
    }

    /// Deletes `key(n)`.
    pub(crate) async fn delete(&mut self, b: &Arc<dyn Backend>, n: u64) -> Result<(), Failure> {
        let key = crate::basic::key(n);
        b.delete(&key).await?;
        self.live.remove(&key);
        self.deleted.insert(key, n);
        Ok(())
    }

    /// Adds what another part of a check wrote to distinct keys.
    pub(crate) fn merge(&mut self, other: Model) {
        self.live.extend(other.live);
        self.deleted.extend(other.deleted);
    }

    /// Records that `key(n)` must be gone (after a `clear`).
    pub(crate) fn gone(&mut self, n: u64) {
        let key = crate::basic::key(n);
        self.live.remove(&key);
        self.deleted.insert(key, n);
    }

    /// Checks that every live key reads as its latest value (or, on a bounded backend, is
    /// gone), that deleted keys are gone, and that the listing and usage agree with what was
    /// read. `when` says at which point of the check, for messages.
    pub(crate) async fn check(
        &self,
        b: &Arc<dyn Backend>,
        budget: &Budget,
        when: &str,
    ) -> Result<Held, Failure> {
        let mut held = Held::default();
        let mut present = Vec::new();
        let sample = if self.live.len() <= CONTAINS_EVERY_KEY_UP_TO {
            1
        } else {
            16
        };
        let mut reads = stream::iter(self.live.keys().copied().enumerate())
            .map(|(i, key)| read_live(Arc::clone(b), key, i % sample == 0))
            .buffered(IN_FLIGHT);
        let mut live = self.live.iter();
        while let Some(read) = reads.next().await {
            let (Some((key, w)), (got, contains)) = (live.next(), read?) else {
                break;
            };
            if let Some(contains) = contains
                && contains != got.is_some()
            {
                return Err(Failure(format!(
                    "{when}: contains(key {}) is {contains} but get returned {}",
                    w.n,
                    observe::describe(got.as_ref(), w.len)
                )));
            }
            match got {
                None if budget.may_evict() => held.evicted += 1,
                None => {
                    return Err(Failure(format!(
                        "{when}: key {} is missing (expected its {} bytes of test value {:?}); \
                         the backend is unbounded, so nothing may be evicted",
                        w.n, w.len, w.id
                    )));
                }
                Some(value) => {
                    observe::expect_value(
                        Some(&value),
                        &format!("{when}: key {}", w.n),
                        w.id,
                        w.len,
                    )?;
                    held.entries += 1;
                    held.bytes += w.len as u64;
                    held.present.insert(w.n);
                    present.push(KeyInfo {
                        key: *key,
                        size: w.len as u64,
                    });
                }
            }
        }
        drop(reads);
        self.check_deleted(b, when).await?;
        let listed = page_through(b, 1000).await?;
        if let Some(difference) = listing_difference(&present, &listed, &self.names()) {
            return Err(Failure(format!(
                "{when}: the listing disagrees with what get returns: {difference}"
            )));
        }
        let usage = b.usage().await?;
        let expected = Usage {
            entries: held.entries,
            bytes: held.bytes,
        };
        if usage != expected {
            return Err(Failure(format!(
                "{when}: usage() reports {} entries and {} bytes, but the backend returns {} \
                 entries of {} bytes in total",
                usage.entries, usage.bytes, expected.entries, expected.bytes
            )));
        }
        Ok(held)
    }

    /// Checks that every deleted key reads as missing, through `get` and `contains`.
    async fn check_deleted(&self, b: &Arc<dyn Backend>, when: &str) -> Result<(), Failure> {
        for (key, n) in &self.deleted {
            let got = observe::read(b, key).await?;
            if got.is_some() {
                return Err(Failure(format!(
                    "{when}: key {n} was deleted, but get returned {} (a missing key must read \
                     as None)",
                    observe::describe(got.as_ref(), 0)
                )));
            }
            if b.contains(key).await? {
                return Err(Failure(format!(
                    "{when}: key {n} was deleted, but contains(key {n}) is true while get \
                     returns None (contains must be false for a missing key)"
                )));
            }
        }
        Ok(())
    }

    fn names(&self) -> BTreeMap<CacheKey, u64> {
        let mut names: BTreeMap<CacheKey, u64> = self.live.iter().map(|(k, w)| (*k, w.n)).collect();
        names.extend(self.deleted.iter().map(|(k, n)| (*k, *n)));
        names
    }
}

/// Puts one test value and, with `read_back`, reads it back at once.
async fn put_one(
    b: &Arc<dyn Backend>,
    read_back: bool,
    n: u64,
    seq: u64,
    len: usize,
) -> Result<(CacheKey, Written), Failure> {
    let key = crate::basic::key(n);
    b.put(&key, values::make(n, seq, len)).await?;
    if read_back {
        let got = observe::read(b, &key).await?;
        observe::expect_value(
            got.as_ref(),
            &format!("reading key {n} right after putting it"),
            (n, seq),
            len,
        )?;
    }
    let id = (n, seq);
    Ok((key, Written { n, id, len }))
}

/// A live key's value and, with `ask`, what `contains` says of it (asked after the read).
async fn read_live(
    b: Arc<dyn Backend>,
    key: CacheKey,
    ask: bool,
) -> Result<(Option<Bytes>, Option<bool>), Failure> {
    let got = observe::read(&b, &key).await?;
    let contains = if ask {
        Some(b.contains(&key).await?)
    } else {
        None
    };
    Ok((got, contains))
}

/// The first differences between the expected and the listed entries, named by the check's key
/// numbers, or `None` when they are equal.
pub(crate) fn listing_difference(
    expected: &[KeyInfo],
    listed: &[KeyInfo],
    names: &BTreeMap<CacheKey, u64>,
) -> Option<String> {
    if expected == listed {
        return None;
    }
    let name = |k: &CacheKey| match names.get(k) {
        Some(n) => format!("key {n}"),
        None => format!("unknown key {k}"),
    };
    let mut out = format!(
        "{} entries listed, {} expected",
        listed.len(),
        expected.len()
    );
    if let Some(w) = listed.windows(2).find(|w| w[0].key >= w[1].key) {
        let _ = write!(
            out,
            "; not in ascending key order or listed twice: {} then {}",
            name(&w[0].key),
            name(&w[1].key)
        );
    }
    let want: BTreeMap<_, _> = expected.iter().map(|e| (e.key, e.size)).collect();
    let got: BTreeMap<_, _> = listed.iter().map(|e| (e.key, e.size)).collect();
    let mut shown = 0;
    for (key, size) in &want {
        if shown == 3 {
            break;
        }
        match got.get(key) {
            None => {
                let _ = write!(out, "; {} ({size} bytes) is not listed", name(key));
                shown += 1;
            }
            Some(listed_size) if listed_size != size => {
                let _ = write!(
                    out,
                    "; {} is listed with size {listed_size}, but get returns {size} bytes",
                    name(key)
                );
                shown += 1;
            }
            Some(_) => {}
        }
    }
    for key in got.keys().filter(|k| !want.contains_key(k)).take(3) {
        let _ = write!(out, "; {} is listed but get does not return it", name(key));
    }
    Some(out)
}

/// The whole listing, page by page with `limit`, checking the paging contract of
/// [`Backend::list`] on every page.
pub(crate) async fn page_through(
    b: &Arc<dyn Backend>,
    limit: usize,
) -> Result<Vec<KeyInfo>, Failure> {
    let mut all: Vec<KeyInfo> = Vec::new();
    let mut after = None;
    for _ in 0..1_000_000 {
        let page = b.list(after, limit).await?;
        if page.entries.len() > limit.max(1) {
            return Err(Failure(format!(
                "list(after, {limit}) returned a page of {} entries, over the limit",
                page.entries.len()
            )));
        }
        if let (Some(first), Some(after)) = (page.entries.first(), after)
            && first.key <= after
        {
            return Err(Failure(format!(
                "list(after = {after}, {limit}) returned {} first: entries must be strictly \
                 greater than after",
                first.key
            )));
        }
        let last = page.entries.last().map(|e| e.key);
        all.extend(page.entries);
        match page.next {
            None => return Ok(all),
            Some(next) if Some(next) != last => {
                return Err(Failure(format!(
                    "list(after, {limit}) returned next = {next}, but next must be the key of \
                     the page's last entry ({})",
                    last.map_or("the page is empty".to_owned(), |k| k.to_string())
                )));
            }
            Some(next) => after = Some(next),
        }
    }
    Err(Failure(format!(
        "paging with limit {limit} did not end after a million pages"
    )))
}
