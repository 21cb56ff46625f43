//! The synchronous operations on the database file: transactions, eviction, recency.
//!
//! # Layout
//!
//! Two tables: `entries` (key -> value) and `meta` (key -> (value size, last-use tick)). Both
//! change in the same transaction on every put. Nothing else is written per put: measured with
//! `cargo bench -p warmcache-redb`, each extra B-tree a durable commit touches costs about 10% on
//! 4 KiB puts, so totals live in memory (summed from `meta` on open) and the eviction order is
//! sampled from `meta` instead of kept in an index.
//!
//! # Eviction
//!
//! Approximate LRU, as Redis does it: to free space, read [`EVICTION_SAMPLE`] consecutive
//! entries of `meta` from a pseudo-random key and evict the least recently used of them; repeat
//! until the new value fits. With 8 samples the victim is, on average, older than about 89% of
//! entries; a cache with at most 8 entries evicts in exact LRU order.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};
use warmcache_core::{CacheKey, Context, Error, KeyInfo, ListPage, Op, Usage};

use crate::error::map;

/// key -> value
const ENTRIES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("warmcache_entries");
/// key -> (value size, last-use tick)
const META: TableDefinition<[u8; 32], (u64, u64)> = TableDefinition::new("warmcache_meta");
/// Entries looked at to choose one eviction victim.
pub(crate) const EVICTION_SAMPLE: usize = 8;

/// Hashes a [`CacheKey`] by its first 8 bytes: keys are already uniform digests.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

type Touches = HashMap<CacheKey, u64, BuildHasherDefault<KeyHasher>>;

/// Totals of the stored values, exact under the writer lock.
#[derive(Debug, Default)]
struct Totals {
    bytes: u64,
    entries: u64,
}

pub(crate) struct Store {
    db: Database,
    path: PathBuf,
    name: String,
    capacity: u64,
    max_value: u64,
    touch_batch: usize,
    tick: AtomicU64,
    touches: Mutex<Touches>,
    /// Held for the whole of every write transaction (redb admits one writer at a time anyway),
    /// so the totals a writer sees are exact.
    writer: Mutex<Totals>,
    /// Copies of the totals for readers, updated after each commit.
    bytes: AtomicU64,
    entries: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub(crate) fn new(
        db: Database,
        path: PathBuf,
        name: String,
        capacity: u64,
        max_value: u64,
        touch_batch: usize,
    ) -> Result<Self, Error> {
        let store = Self {
            db,
            path,
            name,
            capacity,
            max_value,
            touch_batch: touch_batch.max(1),
            tick: AtomicU64::new(0),
            touches: Mutex::new(Touches::default()),
            writer: Mutex::new(Totals::default()),
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        };
        let ctx = || store.ctx(Op::Open, None);
        let txn = store.db.begin_write().map_err(|e| store.err(e, ctx()))?;
        txn.open_table(ENTRIES).map_err(|e| store.err(e, ctx()))?;
        let mut totals = Totals::default();
        let mut tick = 0;
        {
            let meta = txn.open_table(META).map_err(|e| store.err(e, ctx()))?;
            for row in meta.iter().map_err(|e| store.err(e, ctx()))? {
                let (_, v) = row.map_err(|e| store.err(e, ctx()))?;
                let (size, last_use) = v.value();
                totals.bytes += size;
                totals.entries += 1;
                tick = tick.max(last_use);
            }
        }
        txn.commit().map_err(|e| store.err(e, ctx()))?;
        store.tick.store(tick, Ordering::Relaxed);
        store.publish(&totals);
        *store.writer.lock() = totals;
        Ok(store)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn max_value(&self) -> u64 {
        self.max_value
    }

    fn ctx(&self, op: Op, key: Option<&CacheKey>) -> Context {
        match key {
            Some(k) => Context::with_key(self.name.clone(), op, k),
            None => Context::new(self.name.clone(), op),
        }
    }

    fn err(&self, e: impl Into<redb::Error>, context: Context) -> Error {
        map(e, context, &self.path)
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn publish(&self, totals: &Totals) {
        self.bytes.store(totals.bytes, Ordering::Relaxed);
        self.entries.store(totals.entries, Ordering::Relaxed);
    }

    /// Writes batched read recency into `meta`; the batch is taken even if the commit fails later
    /// (recency is a hint, never data).
    fn apply_touches(
        &self,
        meta: &mut Table<'_, [u8; 32], (u64, u64)>,
        ctx: &dyn Fn() -> Context,
    ) -> Result<(), Error> {
        let touches = std::mem::take(&mut *self.touches.lock());
        for (key, tick) in touches {
            let k = *key.as_bytes();
            let current = meta
                .get(k)
                .map_err(|e| self.err(e, ctx()))?
                .map(|g| g.value());
            if let Some((size, old)) = current
                && tick > old
            {
                meta.insert(k, (size, tick))
                    .map_err(|e| self.err(e, ctx()))?;
            }
        }
        Ok(())
    }

    /// The least recently used of [`EVICTION_SAMPLE`] consecutive entries from a pseudo-random
    /// position, with its size, never `keep` (the key being written).
    fn eviction_victim(
        &self,
        meta: &Table<'_, [u8; 32], (u64, u64)>,
        keep: &[u8; 32],
        ctx: &dyn Fn() -> Context,
    ) -> Result<Option<([u8; 32], u64)>, Error> {
        let start = *CacheKey::pseudo_random(self.next_tick()).as_bytes();
        let mut best: Option<([u8; 32], u64, u64)> = None;
        let mut seen = 0;
        let from = meta
            .range::<[u8; 32]>(start..)
            .map_err(|e| self.err(e, ctx()))?;
        let wrapped = meta
            .range::<[u8; 32]>(..start)
            .map_err(|e| self.err(e, ctx()))?;
        for row in from.chain(wrapped) {
            let (k, v) = row.map_err(|e| self.err(e, ctx()))?;
            if k.value() == *keep {
                continue;
            }
            let (size, tick) = v.value();
            if best.is_none_or(|(_, _, t)| tick < t) {
                best = Some((k.value(), size, tick));
            }
            seen += 1;
            if seen == EVICTION_SAMPLE {
                break;
            }
        }
        Ok(best.map(|(k, size, _)| (k, size)))
    }

    /// Runs `f` in a write transaction under the writer lock, committing with `durability`.
    fn write<T>(
        &self,
        ctx: &dyn Fn() -> Context,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction, &mut Totals) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut totals = self.writer.lock();
        let mut txn = self.db.begin_write().map_err(|e| self.err(e, ctx()))?;
        txn.set_durability(durability)
            .map_err(|e| Error::backend(ctx(), e))?;
        let mut updated = Totals {
            bytes: totals.bytes,
            entries: totals.entries,
        };
        let value = f(&txn, &mut updated)?;
        txn.commit().map_err(|e| self.err(e, ctx()))?;
        *totals = updated;
        self.publish(&totals);
        Ok(value)
    }

    pub(crate) fn put(&self, key: &CacheKey, value: &[u8]) -> Result<(), Error> {
        let ctx = || self.ctx(Op::Put, Some(key));
        let size = value.len() as u64;
        if size > self.max_value {
            return Err(Error::Capacity {
                context: ctx(),
                size,
                limit: self.max_value,
            });
        }
        let k = *key.as_bytes();
        self.write(&ctx, Durability::Immediate, |txn, totals| {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
            self.apply_touches(&mut meta, &ctx)?;
            // Overwrites replace in place below; only the totals need the old size now.
            let old = meta
                .get(k)
                .map_err(|e| self.err(e, ctx()))?
                .map(|g| g.value().0);
            if let Some(old_size) = old {
                totals.bytes = totals.bytes.saturating_sub(old_size);
                totals.entries = totals.entries.saturating_sub(1);
            }
            let mut evicted = 0u64;
            while totals.bytes + size > self.capacity {
                let Some((victim, victim_size)) = self.eviction_victim(&meta, &k, &ctx)? else {
                    break;
                };
                meta.remove(victim).map_err(|e| self.err(e, ctx()))?;
                entries.remove(victim).map_err(|e| self.err(e, ctx()))?;
                totals.bytes = totals.bytes.saturating_sub(victim_size);
                totals.entries = totals.entries.saturating_sub(1);
                evicted += 1;
            }
            if evicted > 0 {
                tracing::debug!(backend = %self.name, evicted, "evicted least recently used entries");
            }
            entries.insert(k, value).map_err(|e| self.err(e, ctx()))?;
            meta.insert(k, (size, self.next_tick()))
                .map_err(|e| self.err(e, ctx()))?;
            totals.bytes += size;
            totals.entries += 1;
            Ok(())
        })
    }

    pub(crate) fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error> {
        let ctx = || self.ctx(Op::Get, Some(key));
        let value = {
            let txn = self.db.begin_read().map_err(|e| self.err(e, ctx()))?;
            let entries = txn.open_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            entries
                .get(*key.as_bytes())
                .map_err(|e| self.err(e, ctx()))?
                .map(|g| Bytes::copy_from_slice(g.value()))
        };
        if value.is_some() {
            self.touch(key);
        }
        Ok(value)
    }

    /// Records a read in memory; every `touch_batch` distinct keys, writes them in one
    /// transaction.
    fn touch(&self, key: &CacheKey) {
        let tick = self.next_tick();
        let full = {
            let mut touches = self.touches.lock();
            touches.insert(*key, tick);
            touches.len() >= self.touch_batch
        };
        if full && let Err(e) = self.flush_touches() {
            tracing::warn!(backend = %self.name, error = %e, "could not record read recency");
        }
    }

    /// Writes pending read recency in a non-durable transaction (the next durable put persists
    /// it; a crash loses only recency).
    pub(crate) fn flush_touches(&self) -> Result<(), Error> {
        if self.touches.lock().is_empty() {
            return Ok(());
        }
        let ctx = || self.ctx(Op::Get, None);
        self.write(&ctx, Durability::None, |txn, _| {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
            self.apply_touches(&mut meta, &ctx)
        })
    }

    pub(crate) fn delete(&self, key: &CacheKey) -> Result<(), Error> {
        let ctx = || self.ctx(Op::Delete, Some(key));
        let k = *key.as_bytes();
        self.write(&ctx, Durability::Immediate, |txn, totals| {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
            let old = meta
                .remove(k)
                .map_err(|e| self.err(e, ctx()))?
                .map(|g| g.value().0);
            if let Some(size) = old {
                let mut entries = txn.open_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
                entries.remove(k).map_err(|e| self.err(e, ctx()))?;
                totals.bytes = totals.bytes.saturating_sub(size);
                totals.entries = totals.entries.saturating_sub(1);
            }
            Ok(())
        })
    }

    /// Deletes least recently used entries (exact order, by a full scan of `meta`) until the
    /// entries hold at most `max_bytes`. Returns how many were deleted.
    pub(crate) fn shrink_to(&self, max_bytes: u64) -> Result<u64, Error> {
        let ctx = || self.ctx(Op::Delete, None);
        self.write(&ctx, Durability::Immediate, |txn, totals| {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
            self.apply_touches(&mut meta, &ctx)?;
            if totals.bytes <= max_bytes {
                return Ok(0);
            }
            let mut by_use = Vec::new();
            for row in meta.iter().map_err(|e| self.err(e, ctx()))? {
                let (k, v) = row.map_err(|e| self.err(e, ctx()))?;
                let (size, tick) = v.value();
                by_use.push((tick, k.value(), size));
            }
            by_use.sort_unstable();
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            let mut evicted = 0;
            for (_, k, size) in by_use {
                if totals.bytes <= max_bytes {
                    break;
                }
                meta.remove(k).map_err(|e| self.err(e, ctx()))?;
                entries.remove(k).map_err(|e| self.err(e, ctx()))?;
                totals.bytes = totals.bytes.saturating_sub(size);
                totals.entries = totals.entries.saturating_sub(1);
                evicted += 1;
            }
            Ok(evicted)
        })
    }

    pub(crate) fn contains(&self, key: &CacheKey) -> Result<bool, Error> {
        let ctx = || self.ctx(Op::Contains, Some(key));
        let txn = self.db.begin_read().map_err(|e| self.err(e, ctx()))?;
        let meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
        Ok(meta
            .get(*key.as_bytes())
            .map_err(|e| self.err(e, ctx()))?
            .is_some())
    }

    pub(crate) fn clear(&self) -> Result<(), Error> {
        let ctx = || self.ctx(Op::Clear, None);
        self.touches.lock().clear();
        self.write(&ctx, Durability::Immediate, |txn, totals| {
            txn.delete_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            txn.delete_table(META).map_err(|e| self.err(e, ctx()))?;
            txn.open_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
            *totals = Totals::default();
            Ok(())
        })
    }

    pub(crate) fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage, Error> {
        let ctx = || self.ctx(Op::List, None);
        let limit = limit.max(1);
        let txn = self.db.begin_read().map_err(|e| self.err(e, ctx()))?;
        let meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
        let start = match &after {
            Some(a) => Bound::Excluded(*a.as_bytes()),
            None => Bound::Unbounded,
        };
        let range = meta
            .range::<[u8; 32]>((start, Bound::Unbounded))
            .map_err(|e| self.err(e, ctx()))?;
        let mut entries = Vec::new();
        let mut more = false;
        for item in range {
            let (k, v) = item.map_err(|e| self.err(e, ctx()))?;
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(KeyInfo {
                key: CacheKey::from_bytes(k.value()),
                size: v.value().0,
            });
        }
        let next = if more {
            entries.last().map(|e| e.key)
        } else {
            None
        };
        Ok(ListPage { entries, next })
    }

    pub(crate) fn usage(&self) -> Usage {
        Usage {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush_touches() {
            tracing::debug!(backend = %self.name, error = %e, "read recency not saved on close");
        }
    }
}
