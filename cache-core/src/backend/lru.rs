//! [`SampledLru`]: capacity accounting and sampled eviction (least recently used, or by
//! [`priority`]) for stores that keep a small metadata record per key ([`LruRecord`]), as
//! warmcache-redb and warmcache-rocksdb do.
//!
//! See [`SampledLru`] for why eviction is sampled and how read recency is kept.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::eviction::{Eviction, priority};
use super::{KeyInfo, ListPage, Usage};
use crate::error::Result;
use crate::key::CacheKey;

/// Records looked at to choose one eviction victim: 16 kept 2-10 points more compile time than
/// 8 under [`Eviction::Cost`] in the eviction simulation's model, for 8 more records read (in
/// key order, next to each other) per victim.
pub const EVICTION_SAMPLE: usize = 16;

/// The bit of a stored tick that marks a pinned entry ([`Backend::pin`](crate::Backend::pin)):
/// stores keep one `u64` per record, and ticks never reach it.
const PINNED: u64 = 1 << 63;

/// A key's metadata record: the stored value's size, the tick of its last use, how often it
/// was used, what it cost to produce, the store's inflation at its last use, and whether it is
/// pinned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LruRecord {
    /// The entry's key.
    pub key: CacheKey,
    /// The stored value's length in bytes.
    pub size: u64,
    /// Logical time of the last write or recorded read (larger is more recent).
    pub tick: u64,
    /// Eviction never takes it.
    pub pinned: bool,
    /// The store's inflation value at the last write or recorded read ([`priority`]).
    pub inflation: f64,
    /// Recorded reads since the write.
    pub uses: u32,
    /// What producing the value cost, in milliseconds ([`cost_of`](super::cost_of); 0 when
    /// unknown).
    pub cost_ms: u32,
}

impl LruRecord {
    /// The length of [`to_bytes`](Self::to_bytes).
    pub const LEN: usize = 32;

    /// The record of `key`: `size` bytes and `stored`, the tick as the store keeps it (its
    /// top bit the pin; see [`stored_tick`](Self::stored_tick)), written at that tick and not
    /// used since, of unknown cost, without inflation.
    pub fn new(key: CacheKey, size: u64, stored: u64) -> Self {
        let tick = stored & !PINNED;
        Self {
            key,
            size,
            tick,
            pinned: stored & PINNED != 0,
            inflation: 0.0,
            uses: 0,
            cost_ms: 0,
        }
    }

    /// The record of a value just written at `tick`: `value`'s size and cost
    /// ([`cost_of`](super::cost_of)), unpinned, with the store's current inflation.
    pub fn written(key: CacheKey, value: &[u8], tick: u64, inflation: f64) -> Self {
        let cost = super::cost_of(value);
        Self {
            cost_ms: u32::try_from(cost).unwrap_or(u32::MAX),
            inflation,
            ..Self::new(key, value.len() as u64, tick)
        }
    }

    /// The tick as the store keeps it: the tick, with the top bit set when pinned.
    pub fn stored_tick(&self) -> u64 {
        match self.pinned {
            true => self.tick | PINNED,
            false => self.tick,
        }
    }

    /// The record as stores keep it: size, [stored tick](Self::stored_tick) (little-endian
    /// `u64`), inflation (little-endian `f64`), uses and cost (little-endian `u32`).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..16].copy_from_slice(&self.stored_tick().to_le_bytes());
        out[16..24].copy_from_slice(&self.inflation.to_le_bytes());
        out[24..28].copy_from_slice(&self.uses.to_le_bytes());
        out[28..].copy_from_slice(&self.cost_ms.to_le_bytes());
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s layout, or the 16-byte one of earlier versions
    /// (size and stored tick: read as unused, of unknown cost, without inflation); `None` for
    /// any other length. An inflation that is not a finite, non-negative number reads as 0.
    pub fn from_bytes(key: CacheKey, bytes: &[u8]) -> Option<Self> {
        let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let record = Self::new(key, u64_at(0)?, u64_at(8)?);
        match bytes.len() {
            16 => Some(record),
            Self::LEN => Some(Self {
                inflation: Some(f64::from_bits(u64_at(16)?))
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .unwrap_or(0.0),
                uses: u32_at(24)?,
                cost_ms: u32_at(28)?,
                ..record
            }),
            _ => None,
        }
    }

    /// Where `policy` ranks the record: the lower, the sooner evicted (of equal ranks, the less
    /// recently used).
    fn rank(&self, policy: Eviction) -> f64 {
        match policy {
            Eviction::Lru => self.tick as f64,
            Eviction::Cost => priority(
                self.inflation,
                u64::from(self.uses) + 1,
                u64::from(self.cost_ms),
                self.size,
            ),
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

/// One eviction sample: the lowest ranked of up to [`EVICTION_SAMPLE`] records, skipping
/// pinned ones, the key being written and the victims already taken.
struct Sample<'a> {
    keep: &'a CacheKey,
    taken: &'a [LruRecord],
    policy: Eviction,
    best: Option<(f64, LruRecord)>,
    seen: usize,
}

impl Sample<'_> {
    fn consider(&mut self, r: LruRecord) -> ControlFlow<()> {
        if r.pinned || r.key == *self.keep || self.taken.iter().any(|v| v.key == r.key) {
            return ControlFlow::Continue(());
        }
        let rank = r.rank(self.policy);
        if self
            .best
            .is_none_or(|(best, b)| rank.total_cmp(&best).then(r.tick.cmp(&b.tick)).is_lt())
        {
            self.best = Some((rank, r));
        }
        self.seen += 1;
        if self.seen == EVICTION_SAMPLE {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// Capacity accounting and sampled eviction over an [`LruIndex`], by the store's [`Eviction`]
/// policy.
///
/// # Why sampled
///
/// An exact eviction index adds B-trees (or column families) to every durable commit, measured
/// at about 25-30% on 4 KiB puts in redb. Instead, totals live in memory (summed from the
/// records at open, exact under one writer lock), and to free space the store reads
/// [`EVICTION_SAMPLE`] consecutive records from a pseudo-random key and evicts the lowest
/// ranked of them (the least recently used, or the lowest [`priority`]), as Redis does. With 16
/// samples the victim ranks, on average, below about 94% of entries; a store with at most 16
/// entries evicts in exact order.
///
/// # Inflation
///
/// Under [`Eviction::Cost`] the store's inflation value lives here, in memory: each eviction
/// raises it to the victim's priority (never lowers it: a sampled victim need not be the
/// lowest), and each write or recorded read stamps the current value on the record. On open it
/// is the largest value stamped on any record, the value at the last use before closing.
///
/// # Read recency without write transactions
///
/// A read records its key and a logical tick in memory ([`SampledLru::touch`]). The store writes
/// those records in one batch with its next put, when a batch is full, or when it closes. A
/// crash loses at most the recency of the reads since the last batch, never data.
#[derive(Debug)]
pub struct SampledLru {
    tick: AtomicU64,
    policy: Eviction,
    /// The inflation value (an `f64`'s bits; non-negative floats order as their bits do).
    inflation: AtomicU64,
    touch_batch: usize,
    /// Per key read since the last batch: the tick of the last read and how many.
    touches: Mutex<HashMap<CacheKey, (u64, u32)>>,
    /// Held for the whole of every write, so the totals a writer sees are exact.
    writer: Mutex<Totals>,
    /// Copies of the totals for readers, updated after each write.
    bytes: AtomicU64,
    entries: AtomicU64,
}

impl SampledLru {
    /// Accounting for a store that evicts by `policy` and writes read recency every
    /// `touch_batch` distinct keys.
    pub fn new(touch_batch: usize, policy: Eviction) -> Self {
        Self {
            tick: AtomicU64::new(0),
            policy,
            inflation: AtomicU64::new(0),
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
        let mut inflation = 0.0f64;
        index.scan(None, &mut |r| {
            totals.add(r.size);
            tick = tick.max(r.tick);
            inflation = inflation.max(r.inflation);
            ControlFlow::Continue(())
        })?;
        self.tick.store(tick, Ordering::Relaxed);
        self.inflation.store(inflation.to_bits(), Ordering::Relaxed);
        let mut writer = self.writer.lock();
        *writer = totals;
        self.publish(&totals);
        Ok(())
    }

    /// The next logical tick.
    pub fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The record of `value`, just written under `key` ([`LruRecord::written`]), with the next
    /// tick and the current inflation.
    pub fn written(&self, key: CacheKey, value: &[u8]) -> LruRecord {
        LruRecord::written(key, value, self.next_tick(), self.inflation())
    }

    /// The current inflation value (see [Inflation](Self#inflation)).
    pub fn inflation(&self) -> f64 {
        f64::from_bits(self.inflation.load(Ordering::Relaxed))
    }

    /// Raises the inflation to the priority of `victim`, when evicting by cost.
    fn evicted(&self, victim: &LruRecord) {
        if self.policy == Eviction::Cost {
            let rank = victim.rank(Eviction::Cost);
            self.inflation
                .fetch_max(rank.max(0.0).to_bits(), Ordering::Relaxed);
        }
    }

    /// Records a read of `key` in memory; `true` when a batch is due and the store should write
    /// the pending recency now.
    pub fn touch(&self, key: &CacheKey) -> bool {
        let tick = self.next_tick();
        let mut touches = self.touches.lock();
        let pending = touches.entry(*key).or_insert((tick, 0));
        *pending = (tick, pending.1.saturating_add(1));
        touches.len() >= self.touch_batch
    }

    /// Whether reads are waiting to have their recency written.
    pub fn has_touches(&self) -> bool {
        !self.touches.lock().is_empty()
    }

    /// Takes the pending read recency: the updated records (last use, uses) of keys still
    /// present whose read is newer than their record. The batch is taken even if the caller's
    /// write fails later (recency is a hint, never data).
    ///
    /// # Errors
    ///
    /// When the index cannot be read.
    pub fn take_touches(&self, index: &dyn LruIndex) -> Result<Vec<LruRecord>> {
        let touches = std::mem::take(&mut *self.touches.lock());
        let mut updates = Vec::new();
        for (key, (tick, reads)) in touches {
            if let Some(record) = index.record(&key)?
                && tick > record.tick
            {
                let uses = record.uses.saturating_add(reads);
                updates.push(LruRecord {
                    tick,
                    uses,
                    inflation: self.inflation(),
                    ..record
                });
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
                policy: self.policy,
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
            let Some((_, victim)) = best else {
                break;
            };
            totals.remove(victim.size);
            self.evicted(&victim);
            victims.push(victim);
        }
        Ok(victims)
    }

    /// Chooses entries to evict, lowest ranked first (exact order, by a full scan), until
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
        all.sort_unstable_by(|a, b| {
            let rank = |r: &LruRecord| r.rank(self.policy);
            rank(a)
                .total_cmp(&rank(b))
                .then(a.tick.cmp(&b.tick))
                .then(a.key.cmp(&b.key))
        });
        let mut victims = Vec::new();
        for record in all {
            if totals.bytes <= max_bytes {
                break;
            }
            totals.remove(record.size);
            self.evicted(&record);
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
        let lru = SampledLru::new(16, Eviction::Lru);
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
        let lru = SampledLru::new(16, Eviction::Lru);
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

    /// Records with a size, tick and cost, as `(key seed, size, tick, cost_ms)`.
    fn costed(records: &[(u64, u64, u64, u32)]) -> BTreeMap<CacheKey, LruRecord> {
        records
            .iter()
            .map(|&(seed, size, tick, cost_ms)| {
                let key = CacheKey::pseudo_random(seed);
                let record = LruRecord {
                    cost_ms,
                    ..LruRecord::new(key, size, tick)
                };
                (key, record)
            })
            .collect()
    }

    struct RecordIndex(BTreeMap<CacheKey, LruRecord>);

    impl LruIndex for RecordIndex {
        fn record(&self, key: &CacheKey) -> Result<Option<LruRecord>> {
            Ok(self.0.get(key).copied())
        }
        fn scan(&self, from: Option<&CacheKey>, visit: Visit<'_>) -> Result<()> {
            let start = from.copied().unwrap_or(CacheKey::from_bytes([0; 32]));
            for record in self.0.range(start..).map(|(_, r)| *r) {
                if visit(record).is_break() {
                    break;
                }
            }
            Ok(())
        }
    }

    #[test]
    fn cost_eviction_keeps_what_is_expensive_per_byte_where_lru_would_not() {
        // The oldest entry took 60 s to produce for its 100 bytes; the others 10 ms.
        let idx = RecordIndex(costed(&[
            (1, 100, 1, 60_000),
            (2, 100, 2, 10),
            (3, 100, 3, 10),
        ]));
        let expensive = CacheKey::pseudo_random(1);
        let keep = CacheKey::pseudo_random(9);
        for (policy, evicted) in [(Eviction::Lru, true), (Eviction::Cost, false)] {
            let lru = SampledLru::new(16, policy);
            lru.load(&idx).unwrap();
            let victims = lru
                .write(|t| lru.victims(&idx, t, 100, 300, &keep))
                .unwrap();
            assert_eq!(victims.len(), 1, "{policy}");
            assert_eq!(victims[0].key == expensive, evicted, "{policy}");
            let lru = SampledLru::new(16, policy);
            lru.load(&idx).unwrap();
            let shrunk = lru.write(|t| lru.shrink_victims(&idx, t, 200)).unwrap();
            assert_eq!(shrunk[0].key == expensive, evicted, "{policy}");
        }
    }

    #[test]
    fn cost_eviction_keeps_the_entry_used_more_of_two_alike() {
        let mut records = costed(&[(1, 100, 1, 50), (2, 100, 1, 50)]);
        let used = CacheKey::pseudo_random(1);
        let lru = SampledLru::new(16, Eviction::Cost);
        lru.load(&RecordIndex(records.clone())).unwrap();
        for _ in 0..3 {
            lru.touch(&used);
        }
        let updates = lru.take_touches(&RecordIndex(records.clone())).unwrap();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].uses, 3, "each read counts");
        records.insert(used, updates[0]);
        let idx = RecordIndex(records);
        let victims = lru
            .write(|t| lru.victims(&idx, t, 100, 200, &CacheKey::pseudo_random(9)))
            .unwrap();
        assert_eq!(victims[0].key, CacheKey::pseudo_random(2));
    }

    #[test]
    fn inflation_ages_entries_that_were_used_long_ago() {
        let old = CacheKey::pseudo_random(1);
        let mut records = costed(&[(1, 100, 1, 10), (2, 100, 2, 10)]);
        // Used five times, before the store's inflation rose.
        records.entry(old).and_modify(|r| r.uses = 5);
        let lru = SampledLru::new(16, Eviction::Cost);
        let idx = RecordIndex(records.clone());
        lru.load(&idx).unwrap();
        assert_eq!(lru.inflation(), 0.0);
        // Evicting the other entry (priority 0.1) raises the inflation to its priority.
        let victims = lru.write(|t| lru.victims(&idx, t, 100, 200, &old)).unwrap();
        assert_eq!(victims.len(), 1);
        assert!((lru.inflation() - 0.1).abs() < 1e-9, "{}", lru.inflation());
        // A new entry written now carries the inflation; once it has risen to 1.0 (evictions
        // of its like), the new entry's 1.1 outranks the old one's 0.6.
        let fresh = lru.written(CacheKey::pseudo_random(3), &[0u8; 100]);
        assert_eq!(fresh.inflation, lru.inflation());
        records.insert(
            fresh.key,
            LruRecord {
                inflation: 1.0,
                ..fresh
            },
        );
        records.remove(&victims[0].key);
        let idx = RecordIndex(records);
        let victims = lru
            .write(|t| lru.victims(&idx, t, 100, 100, &CacheKey::pseudo_random(9)))
            .unwrap();
        assert_eq!(victims.len(), 1);
        assert_eq!(victims[0].key, old, "the long-unused entry goes first");
        // Reopened, the store continues from the largest inflation on its records.
        let reopened = SampledLru::new(16, Eviction::Cost);
        reopened.load(&idx).unwrap();
        assert_eq!(reopened.inflation(), 1.0);
    }

    #[test]
    fn records_keep_every_field_and_read_the_earlier_layout() {
        let key = CacheKey::pseudo_random(4);
        let record = LruRecord {
            pinned: true,
            inflation: 0.5,
            uses: 3,
            cost_ms: 1234,
            ..LruRecord::new(key, 99, 11)
        };
        assert_eq!(LruRecord::from_bytes(key, &record.to_bytes()), Some(record));
        let old = &record.to_bytes()[..16];
        let read = LruRecord::from_bytes(key, old).unwrap();
        assert_eq!((read.size, read.tick, read.pinned), (99, 11, true));
        assert_eq!((read.inflation, read.uses, read.cost_ms), (0.0, 0, 0));
        assert_eq!(LruRecord::from_bytes(key, &[0; 24]), None);
    }

    #[test]
    fn touches_update_only_present_older_records() {
        let idx = index(3);
        let lru = SampledLru::new(2, Eviction::Lru);
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
