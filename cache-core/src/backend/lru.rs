//! [`SampledLru`]: capacity accounting and approximate-LRU eviction for stores that keep a
//! small metadata record (size, last-use tick) per key, as warmcache-redb and warmcache-rocksdb
//! do.
//!
//! See [`SampledLru`] for why eviction is sampled and how read recency is kept.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{KeyInfo, ListPage, Usage};
use crate::error::Result;
use crate::key::CacheKey;

/// Records looked at to choose one eviction victim.
pub const EVICTION_SAMPLE: usize = 8;

/// The bit of a stored tick that marks a pinned entry ([`Backend::pin`](crate::Backend::pin)):
/// stores keep one `u64` per record, and ticks never reach it.
const PINNED: u64 = 1 << 63;

/// A key's metadata record: the stored value's size, the tick of its last use, and whether it
/// is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LruRecord {
    /// The entry's key.
    pub key: CacheKey,
    /// The stored value's length in bytes.
    pub size: u64,
    /// Logical time of the last write or recorded read (larger is more recent).
    pub tick: u64,
    /// Eviction never takes it.
    pub pinned: bool,
}

impl LruRecord {
    /// The record of `key`: `size` bytes and `stored`, the tick as the store keeps it (its
    /// top bit the pin; see [`stored_tick`](Self::stored_tick)).
    pub fn new(key: CacheKey, size: u64, stored: u64) -> Self {
        Self {
            key,
            size,
            tick: stored & !PINNED,
            pinned: stored & PINNED != 0,
        }
    }

    /// The tick as the store keeps it: the tick, with the top bit set when pinned.
    pub fn stored_tick(&self) -> u64 {
        match self.pinned {
            true => self.tick | PINNED,
            false => self.tick,
        }
    }
}

/// What [`LruIndex::scan`] calls for each record; it breaks to stop the scan.
pub type Visit<'a> = &'a mut dyn FnMut(LruRecord) -> ControlFlow<()>;

/// The entry count and stored bytes of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sum of the stored values' lengths.
    pub bytes: u64,
    /// Number of entries.
    pub entries: u64,
}

impl Totals {
    /// Counts a new entry of `size` bytes.
    pub fn add(&mut self, size: u64) {
        self.bytes = self.bytes.saturating_add(size);
        self.entries = self.entries.saturating_add(1);
    }

    /// Stops counting an entry of `size` bytes.
    pub fn remove(&mut self, size: u64) {
        self.bytes = self.bytes.saturating_sub(size);
        self.entries = self.entries.saturating_sub(1);
    }
}

/// Read access to a store's metadata records, as seen inside the current transaction.
pub trait LruIndex {
    /// The record of `key`, if present.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn record(&self, key: &CacheKey) -> Result<Option<LruRecord>>;

    /// Visits records in ascending key order, starting at `from` (inclusive; the first key when
    /// `None`), until `visit` breaks or the records end.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn scan(&self, from: Option<&CacheKey>, visit: Visit<'_>) -> Result<()>;
}

/// One eviction sample: the least recently used of up to [`EVICTION_SAMPLE`] records, skipping
/// the key being written and the victims already taken.
struct Sample<'a> {
    keep: &'a CacheKey,
    taken: &'a [LruRecord],
    best: Option<LruRecord>,
    seen: usize,
}

impl Sample<'_> {
    fn consider(&mut self, r: LruRecord) -> ControlFlow<()> {
        if r.pinned || r.key == *self.keep || self.taken.iter().any(|v| v.key == r.key) {
            return ControlFlow::Continue(());
        }
        if self.best.is_none_or(|b| r.tick < b.tick) {
            self.best = Some(r);
        }
        self.seen += 1;
        if self.seen == EVICTION_SAMPLE {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// Capacity accounting and sampled-LRU eviction over an [`LruIndex`].
///
/// # Why sampled
///
/// An exact LRU index adds B-trees (or column families) to every durable commit, measured at
/// about 25-30% on 4 KiB puts in redb. Instead, totals live in memory (summed from the records
/// at open, exact under one writer lock), and to free space the store reads
/// [`EVICTION_SAMPLE`] consecutive records from a pseudo-random key and evicts the least
/// recently used of them, as Redis does. With 8 samples the victim is, on average, older than
/// about 89% of entries; a store with at most 8 entries evicts in exact LRU order.
///
/// # Read recency without write transactions
///
/// A read records its key and a logical tick in memory ([`SampledLru::touch`]). The store writes
/// those records in one batch with its next put, when a batch is full, or when it closes. A
/// crash loses at most the recency of the reads since the last batch, never data.
#[derive(Debug)]
pub struct SampledLru {
    tick: AtomicU64,
    touch_batch: usize,
    touches: Mutex<HashMap<CacheKey, u64>>,
    /// Held for the whole of every write, so the totals a writer sees are exact.
    writer: Mutex<Totals>,
    /// Copies of the totals for readers, updated after each write.
    bytes: AtomicU64,
    entries: AtomicU64,
}

impl SampledLru {
    /// Accounting for a store whose read recency is written every `touch_batch` distinct keys.
    pub fn new(touch_batch: usize) -> Self {
        Self {
            tick: AtomicU64::new(0),
            touch_batch: touch_batch.max(1),
            touches: Mutex::new(HashMap::new()),
            writer: Mutex::new(Totals::default()),
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        }
    }

    /// Sums the records of `index` into the totals and continues the tick after the largest
    /// (when the store opens).
    ///
    /// # Errors
    ///
    /// When the index cannot be read.
    pub fn load(&self, index: &dyn LruIndex) -> Result<()> {
        let mut totals = Totals::default();
        let mut tick = 0;
        index.scan(None, &mut |r| {
            totals.add(r.size);
            tick = tick.max(r.tick);
            ControlFlow::Continue(())
        })?;
        self.tick.store(tick, Ordering::Relaxed);
        let mut writer = self.writer.lock();
        *writer = totals;
        self.publish(&totals);
        Ok(())
    }

    /// The next logical tick.
    pub fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records a read of `key` in memory; `true` when a batch is due and the store should write
    /// the pending recency now.
    pub fn touch(&self, key: &CacheKey) -> bool {
        let tick = self.next_tick();
        let mut touches = self.touches.lock();
        touches.insert(*key, tick);
        touches.len() >= self.touch_batch
    }

    /// Whether reads are waiting to have their recency written.
    pub fn has_touches(&self) -> bool {
        !self.touches.lock().is_empty()
    }

    /// Takes the pending read recency: the updated records of keys still present whose read is
    /// newer than their record. The batch is taken even if the caller's write fails later
    /// (recency is a hint, never data).
    ///
    /// # Errors
    ///
    /// When the index cannot be read.
    pub fn take_touches(&self, index: &dyn LruIndex) -> Result<Vec<LruRecord>> {
        let touches = std::mem::take(&mut *self.touches.lock());
        let mut updates = Vec::new();
        for (key, tick) in touches {
            if let Some(record) = index.record(&key)?
                && tick > record.tick
            {
                updates.push(LruRecord { tick, ..record });
            }
        }
        Ok(updates)
    }

    /// Logs what a store's final write of pending recency (when it closes) returned: losing
    /// recency is harmless, so it is not an error.
    pub fn closed(&self, store: &str, flushed: Result<()>) {
        if let Err(e) = flushed {
            tracing::debug!(backend = %store, error = %e, "read recency not saved on close");
        }
    }

    /// Drops pending read recency (when the store is cleared).
    pub fn forget_touches(&self) {
        self.touches.lock().clear();
    }

    /// Runs one write of the store under the writer lock. `write` gets a copy of the totals to
    /// update as it changes entries; when it returns `Ok` (its transaction committed) the copy
    /// becomes the store's totals.
    ///
    /// # Errors
    ///
    /// Whatever `write` returns.
    pub fn write<T>(&self, write: impl FnOnce(&mut Totals) -> Result<T>) -> Result<T> {
        let mut totals = self.writer.lock();
        let mut updated = *totals;
        let value = write(&mut updated)?;
        *totals = updated;
        self.publish(&totals);
        Ok(value)
    }

    /// Chooses entries to evict so that a value of `size` bytes fits under `capacity`, removing
    /// them from `totals`; never `keep` (the key being written). Call inside
    /// [`write`](Self::write), after the old value of `keep` was removed from `totals`.
    ///
    /// # Errors
    ///
    /// When the index cannot be read.
    pub fn victims(
        &self,
        index: &dyn LruIndex,
        totals: &mut Totals,
        size: u64,
        capacity: u64,
        keep: &CacheKey,
    ) -> Result<Vec<LruRecord>> {
        let mut victims: Vec<LruRecord> = Vec::new();
        while totals.bytes.saturating_add(size) > capacity {
            let start = CacheKey::pseudo_random(self.next_tick());
            let mut sample = Sample {
                keep,
                taken: &victims,
                best: None,
                seen: 0,
            };
            index.scan(Some(&start), &mut |r| sample.consider(r))?;
            if sample.seen < EVICTION_SAMPLE {
                // Wrap around to the first key, stopping where the first scan began.
                index.scan(None, &mut |r| {
                    if r.key >= start {
                        return ControlFlow::Break(());
                    }
                    sample.consider(r)
                })?;
            }
            let best = sample.best;
            let Some(victim) = best else {
                break;
            };
            totals.remove(victim.size);
            victims.push(victim);
        }
        Ok(victims)
    }

    /// Chooses entries to evict, least recently used first (exact order, by a full scan), until
    /// `totals` hold at most `max_bytes`, removing them from `totals`. Call inside
    /// [`write`](Self::write), after writing pending recency.
    ///
    /// # Errors
    ///
    /// When the index cannot be read.
    pub fn shrink_victims(
        &self,
        index: &dyn LruIndex,
        totals: &mut Totals,
        max_bytes: u64,
    ) -> Result<Vec<LruRecord>> {
        if totals.bytes <= max_bytes {
            return Ok(Vec::new());
        }
        let mut all = Vec::new();
        index.scan(None, &mut |r| {
            if !r.pinned {
                all.push(r);
            }
            ControlFlow::Continue(())
        })?;
        all.sort_unstable_by_key(|r| (r.tick, r.key));
        let mut victims = Vec::new();
        for record in all {
            if totals.bytes <= max_bytes {
                break;
            }
            totals.remove(record.size);
            victims.push(record);
        }
        Ok(victims)
    }

    /// The record of `key` pinned or unpinned, when present: `Ok(None)` for a missing key,
    /// [`Error::Capacity`](crate::Error::Capacity) (from `refused`, given the bytes pinned
    /// with it) when pinning it would take the pinned entries over
    /// [`max_pinned`](super::max_pinned) of `capacity`. The store writes the returned record
    /// ([`LruRecord::stored_tick`]) inside its write.
    ///
    /// # Errors
    ///
    /// When the index cannot be read, or the pin does not fit.
    pub fn pin(
        index: &dyn LruIndex,
        key: &CacheKey,
        pinned: bool,
        capacity: u64,
        refused: impl FnOnce(u64, u64) -> crate::Error,
    ) -> Result<Option<LruRecord>> {
        let Some(record) = index.record(key)? else {
            return Ok(None);
        };
        if pinned && !record.pinned {
            let mut already = 0u64;
            index.scan(None, &mut |r| {
                if r.pinned {
                    already = already.saturating_add(r.size);
                }
                ControlFlow::Continue(())
            })?;
            let total = already.saturating_add(record.size);
            let limit = super::max_pinned(capacity);
            if total > limit {
                return Err(refused(total, limit));
            }
        }
        Ok(Some(LruRecord { pinned, ..record }))
    }

    /// A page of the listing: up to `limit` (at least 1) keys strictly after `after`, in key
    /// order, with their sizes.
    ///
    /// # Errors
    ///
    /// When the index cannot be read.
    pub fn page(index: &dyn LruIndex, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        let limit = limit.max(1);
        let mut entries = Vec::new();
        let mut more = false;
        index.scan(after.as_ref(), &mut |r| {
            if Some(r.key) == after {
                return ControlFlow::Continue(());
            }
            if entries.len() == limit {
                more = true;
                return ControlFlow::Break(());
            }
            entries.push(KeyInfo {
                key: r.key,
                size: r.size,
            });
            ControlFlow::Continue(())
        })?;
        let next = if more {
            entries.last().map(|e| e.key)
        } else {
            None
        };
        Ok(ListPage { entries, next })
    }

    /// Entry count and stored bytes as of the last write.
    pub fn usage(&self) -> Usage {
        Usage {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, totals: &Totals) {
        self.bytes.store(totals.bytes, Ordering::Relaxed);
        self.entries.store(totals.entries, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct MapIndex(BTreeMap<CacheKey, (u64, u64)>);

    impl LruIndex for MapIndex {
        fn record(&self, key: &CacheKey) -> Result<Option<LruRecord>> {
            Ok(self
                .0
                .get(key)
                .map(|&(size, tick)| LruRecord::new(*key, size, tick)))
        }
        fn scan(&self, from: Option<&CacheKey>, visit: Visit<'_>) -> Result<()> {
            let start = from.copied().unwrap_or(CacheKey::from_bytes([0; 32]));
            for (&key, &(size, tick)) in self.0.range(start..) {
                if visit(LruRecord::new(key, size, tick)).is_break() {
                    break;
                }
            }
            Ok(())
        }
    }

    fn index(n: u64) -> MapIndex {
        MapIndex(
            (0..n)
                .map(|i| (CacheKey::pseudo_random(1000 + i), (10, i)))
                .collect(),
        )
    }

    #[test]
    fn small_stores_evict_in_exact_lru_order() {
        let idx = index(8);
        let lru = SampledLru::new(16);
        lru.load(&idx).unwrap();
        let keep = CacheKey::pseudo_random(5);
        let victims = lru.write(|t| lru.victims(&idx, t, 25, 80, &keep)).unwrap();
        let ticks: Vec<u64> = victims.iter().map(|v| v.tick).collect();
        assert_eq!(ticks, vec![0, 1, 2]);
        assert_eq!(
            lru.usage(),
            Usage {
                entries: 5,
                bytes: 50
            }
        );
    }

    #[test]
    fn shrink_is_exact_and_pages_are_ordered() {
        let idx = index(20);
        let lru = SampledLru::new(16);
        lru.load(&idx).unwrap();
        let victims = lru.write(|t| lru.shrink_victims(&idx, t, 100)).unwrap();
        assert_eq!(victims.len(), 10);
        assert!(victims.iter().all(|v| v.tick < 10));
        let first = SampledLru::page(&idx, None, 7).unwrap();
        let second = SampledLru::page(&idx, first.next, 100).unwrap();
        assert_eq!(first.entries.len() + second.entries.len(), 20);
        assert!(second.next.is_none());
        assert!(first.entries.last().unwrap().key < second.entries[0].key);
    }

    #[test]
    fn touches_update_only_present_older_records() {
        let idx = index(3);
        let lru = SampledLru::new(2);
        lru.load(&idx).unwrap();
        let present = *idx.0.keys().next().unwrap();
        assert!(!lru.touch(&present));
        assert!(
            lru.touch(&CacheKey::pseudo_random(1)),
            "the second key fills the batch"
        );
        let updates = lru.take_touches(&idx).unwrap();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].key, present);
        assert!(!lru.has_touches());
    }
}
