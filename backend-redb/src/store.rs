//! The synchronous operations on the database file: transactions, eviction, recency.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use warmcache_core::{CacheKey, Context, Error, KeyInfo, ListPage, Op, Usage};

use crate::error::map;

/// key -> value
const ENTRIES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("warmcache_entries");
/// key -> (value size, last-use tick)
const META: TableDefinition<[u8; 32], (u64, u64)> = TableDefinition::new("warmcache_meta");
/// (last-use tick, key) -> (): the eviction order, oldest first
const LRU: TableDefinition<(u64, [u8; 32]), ()> = TableDefinition::new("warmcache_lru");
/// counter name -> value ("bytes", "entries", "tick")
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("warmcache_totals");

pub(crate) struct Store {
    db: Database,
    path: PathBuf,
    name: String,
    capacity: u64,
    max_value: u64,
    touch_batch: usize,
    tick: AtomicU64,
    touches: Mutex<HashMap<CacheKey, u64>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

struct Totals {
    bytes: u64,
    entries: u64,
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
            touches: Mutex::new(HashMap::new()),
        };
        // Create the tables and load the recency clock.
        let ctx = || store.ctx(Op::Open, None);
        let txn = store.db.begin_write().map_err(|e| store.err(e, ctx()))?;
        let tick = {
            txn.open_table(ENTRIES).map_err(|e| store.err(e, ctx()))?;
            txn.open_table(META).map_err(|e| store.err(e, ctx()))?;
            txn.open_table(LRU).map_err(|e| store.err(e, ctx()))?;
            let totals = txn.open_table(TOTALS).map_err(|e| store.err(e, ctx()))?;
            totals
                .get("tick")
                .map_err(|e| store.err(e, ctx()))?
                .map_or(0, |g| g.value())
        };
        txn.commit().map_err(|e| store.err(e, ctx()))?;
        store.tick.store(tick, Ordering::Relaxed);
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

    /// Writes batched read recency into `txn`; the batch is taken even if the commit fails later
    /// (recency is a hint, never data).
    fn apply_touches(
        &self,
        txn: &WriteTransaction,
        ctx: &dyn Fn() -> Context,
    ) -> Result<(), Error> {
        let touches = std::mem::take(&mut *self.touches.lock());
        if touches.is_empty() {
            return Ok(());
        }
        let mut meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
        let mut lru = txn.open_table(LRU).map_err(|e| self.err(e, ctx()))?;
        for (key, tick) in touches {
            let k = *key.as_bytes();
            let current = meta
                .get(k)
                .map_err(|e| self.err(e, ctx()))?
                .map(|g| g.value());
            if let Some((size, old)) = current
                && tick > old
            {
                lru.remove((old, k)).map_err(|e| self.err(e, ctx()))?;
                lru.insert((tick, k), ()).map_err(|e| self.err(e, ctx()))?;
                meta.insert(k, (size, tick))
                    .map_err(|e| self.err(e, ctx()))?;
            }
        }
        Ok(())
    }

    fn read_totals(
        &self,
        totals: &impl ReadableTable<&'static str, u64>,
        ctx: &dyn Fn() -> Context,
    ) -> Result<Totals, Error> {
        let get = |name: &str| -> Result<u64, Error> {
            Ok(totals
                .get(name)
                .map_err(|e| self.err(e, ctx()))?
                .map_or(0, |g| g.value()))
        };
        Ok(Totals {
            bytes: get("bytes")?,
            entries: get("entries")?,
        })
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
        let txn = self.db.begin_write().map_err(|e| self.err(e, ctx()))?;
        self.apply_touches(&txn, &ctx)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
            let mut lru = txn.open_table(LRU).map_err(|e| self.err(e, ctx()))?;
            let mut totals = txn.open_table(TOTALS).map_err(|e| self.err(e, ctx()))?;
            let Totals {
                mut bytes,
                entries: mut count,
            } = self.read_totals(&totals, &ctx)?;

            let old = meta
                .remove(k)
                .map_err(|e| self.err(e, ctx()))?
                .map(|g| g.value());
            if let Some((old_size, old_tick)) = old {
                lru.remove((old_tick, k)).map_err(|e| self.err(e, ctx()))?;
                entries.remove(k).map_err(|e| self.err(e, ctx()))?;
                bytes = bytes.saturating_sub(old_size);
                count = count.saturating_sub(1);
            }
            let mut evicted = 0u64;
            while bytes + size > self.capacity {
                let oldest = lru
                    .pop_first()
                    .map_err(|e| self.err(e, ctx()))?
                    .map(|(k, _)| k.value());
                let Some((_, victim)) = oldest else { break };
                let victim_size = meta
                    .remove(victim)
                    .map_err(|e| self.err(e, ctx()))?
                    .map_or(0, |g| g.value().0);
                entries.remove(victim).map_err(|e| self.err(e, ctx()))?;
                bytes = bytes.saturating_sub(victim_size);
                count = count.saturating_sub(1);
                evicted += 1;
            }
            if evicted > 0 {
                tracing::debug!(backend = %self.name, evicted, "evicted least recently used entries");
            }
            let tick = self.next_tick();
            entries.insert(k, value).map_err(|e| self.err(e, ctx()))?;
            meta.insert(k, (size, tick))
                .map_err(|e| self.err(e, ctx()))?;
            lru.insert((tick, k), ()).map_err(|e| self.err(e, ctx()))?;
            totals
                .insert("bytes", bytes + size)
                .map_err(|e| self.err(e, ctx()))?;
            totals
                .insert("entries", count + 1)
                .map_err(|e| self.err(e, ctx()))?;
            totals
                .insert("tick", self.tick.load(Ordering::Relaxed))
                .map_err(|e| self.err(e, ctx()))?;
        }
        txn.commit().map_err(|e| self.err(e, ctx()))
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

    /// Records a read in memory; every `touch_batch` reads, writes them in one transaction.
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
        let mut txn = self.db.begin_write().map_err(|e| self.err(e, ctx()))?;
        txn.set_durability(Durability::None)
            .map_err(|e| Error::backend(ctx(), e))?;
        self.apply_touches(&txn, &ctx)?;
        {
            let mut totals = txn.open_table(TOTALS).map_err(|e| self.err(e, ctx()))?;
            totals
                .insert("tick", self.tick.load(Ordering::Relaxed))
                .map_err(|e| self.err(e, ctx()))?;
        }
        txn.commit().map_err(|e| self.err(e, ctx()))
    }

    pub(crate) fn delete(&self, key: &CacheKey) -> Result<(), Error> {
        let ctx = || self.ctx(Op::Delete, Some(key));
        let k = *key.as_bytes();
        let txn = self.db.begin_write().map_err(|e| self.err(e, ctx()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
            let old = meta
                .remove(k)
                .map_err(|e| self.err(e, ctx()))?
                .map(|g| g.value());
            let Some((size, tick)) = old else {
                drop(meta);
                return txn.abort().map_err(|e| self.err(e, ctx()));
            };
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            let mut lru = txn.open_table(LRU).map_err(|e| self.err(e, ctx()))?;
            let mut totals = txn.open_table(TOTALS).map_err(|e| self.err(e, ctx()))?;
            let t = self.read_totals(&totals, &ctx)?;
            entries.remove(k).map_err(|e| self.err(e, ctx()))?;
            lru.remove((tick, k)).map_err(|e| self.err(e, ctx()))?;
            totals
                .insert("bytes", t.bytes.saturating_sub(size))
                .map_err(|e| self.err(e, ctx()))?;
            totals
                .insert("entries", t.entries.saturating_sub(1))
                .map_err(|e| self.err(e, ctx()))?;
        }
        txn.commit().map_err(|e| self.err(e, ctx()))
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
        let txn = self.db.begin_write().map_err(|e| self.err(e, ctx()))?;
        {
            txn.delete_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            txn.delete_table(META).map_err(|e| self.err(e, ctx()))?;
            txn.delete_table(LRU).map_err(|e| self.err(e, ctx()))?;
            txn.open_table(ENTRIES).map_err(|e| self.err(e, ctx()))?;
            txn.open_table(META).map_err(|e| self.err(e, ctx()))?;
            txn.open_table(LRU).map_err(|e| self.err(e, ctx()))?;
            let mut totals = txn.open_table(TOTALS).map_err(|e| self.err(e, ctx()))?;
            totals.insert("bytes", 0).map_err(|e| self.err(e, ctx()))?;
            totals
                .insert("entries", 0)
                .map_err(|e| self.err(e, ctx()))?;
        }
        txn.commit().map_err(|e| self.err(e, ctx()))
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

    pub(crate) fn usage(&self) -> Result<Usage, Error> {
        let ctx = || self.ctx(Op::Usage, None);
        let txn = self.db.begin_read().map_err(|e| self.err(e, ctx()))?;
        let totals = txn.open_table(TOTALS).map_err(|e| self.err(e, ctx()))?;
        let t = self.read_totals(&totals, &ctx)?;
        Ok(Usage {
            entries: t.entries,
            bytes: t.bytes,
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush_touches() {
            tracing::debug!(backend = %self.name, error = %e, "read recency not saved on close");
        }
    }
}
