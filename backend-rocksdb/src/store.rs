//! The synchronous operations on the database: batches, eviction, recency.
//!
//! Two column families change together in one atomic write batch: `default` (key -> value, large
//! values in blob files) and `meta` (key -> value size and last-use tick, 16 bytes). Totals live
//! in memory (summed from `meta` on open) and eviction samples `meta` (approximate LRU, as in
//! warmcache-redb): to free space, read 8 consecutive entries from a pseudo-random key and evict
//! the least recently used, until the new value fits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use warmcache_core::{CacheKey, Context, Error, KeyInfo, ListPage, Op, Usage};

use crate::error::map;

pub(crate) const META: &str = "meta";
const EVICTION_SAMPLE: usize = 8;

#[derive(Debug, Default)]
struct Totals {
    bytes: u64,
    entries: u64,
}

pub(crate) struct Store {
    db: DB,
    path: PathBuf,
    name: String,
    capacity: u64,
    max_value: u64,
    read_only: bool,
    sync: bool,
    touch_batch: usize,
    tick: AtomicU64,
    touches: Mutex<HashMap<CacheKey, u64>>,
    writer: Mutex<Totals>,
    bytes: AtomicU64,
    entries: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

fn encode_meta(size: u64, tick: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&size.to_le_bytes());
    out[8..].copy_from_slice(&tick.to_le_bytes());
    out
}

fn decode_meta(bytes: &[u8]) -> Option<(u64, u64)> {
    let size = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let tick = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((size, tick))
}

fn decode_key(bytes: &[u8]) -> Option<CacheKey> {
    <[u8; 32]>::try_from(bytes).ok().map(CacheKey::from_bytes)
}

pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) capacity: u64,
    pub(crate) max_value: u64,
    pub(crate) read_only: bool,
    pub(crate) sync: bool,
    pub(crate) touch_batch: usize,
}

impl Store {
    pub(crate) fn new(db: DB, path: PathBuf, s: Settings) -> Result<Self, Error> {
        let store = Self {
            db,
            path,
            name: s.name,
            capacity: s.capacity,
            max_value: s.max_value,
            read_only: s.read_only,
            sync: s.sync,
            touch_batch: s.touch_batch.max(1),
            tick: AtomicU64::new(0),
            touches: Mutex::new(HashMap::new()),
            writer: Mutex::new(Totals::default()),
            bytes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        };
        let ctx = || store.ctx(Op::Open, None);
        let meta = store.meta(&ctx)?;
        let mut totals = Totals::default();
        let mut tick = 0;
        for row in store.db.iterator_cf(meta, IteratorMode::Start) {
            let (_, v) = row.map_err(|e| store.err(e, ctx()))?;
            let (size, last) = decode_meta(&v)
                .ok_or_else(|| Error::corrupt(ctx(), "a metadata record is not 16 bytes"))?;
            totals.bytes += size;
            totals.entries += 1;
            tick = tick.max(last);
        }
        store.tick.store(tick, Ordering::Relaxed);
        store.bytes.store(totals.bytes, Ordering::Relaxed);
        store.entries.store(totals.entries, Ordering::Relaxed);
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

    fn err(&self, e: rocksdb::Error, context: Context) -> Error {
        map(e, context, &self.path)
    }

    fn meta(&self, ctx: &dyn Fn() -> Context) -> Result<&rocksdb::ColumnFamily, Error> {
        self.db
            .cf_handle(META)
            .ok_or_else(|| Error::corrupt(ctx(), "the metadata column family is missing"))
    }

    fn writable(&self, op: Op, key: Option<&CacheKey>) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::NotSupported {
                context: self.ctx(op, key),
            });
        }
        Ok(())
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn write_options(&self) -> WriteOptions {
        let mut o = WriteOptions::default();
        o.set_sync(self.sync);
        o
    }

    fn publish(&self, t: &Totals) {
        self.bytes.store(t.bytes, Ordering::Relaxed);
        self.entries.store(t.entries, Ordering::Relaxed);
    }

    /// Adds batched read recency to `batch` for keys still present.
    fn apply_touches(
        &self,
        batch: &mut WriteBatch,
        ctx: &dyn Fn() -> Context,
    ) -> Result<(), Error> {
        let touches = std::mem::take(&mut *self.touches.lock());
        let meta = self.meta(ctx)?;
        for (key, tick) in touches {
            let current = self
                .db
                .get_pinned_cf(meta, key.as_bytes())
                .map_err(|e| self.err(e, ctx()))?
                .and_then(|v| decode_meta(&v));
            if let Some((size, old)) = current
                && tick > old
            {
                batch.put_cf(meta, key.as_bytes(), encode_meta(size, tick));
            }
        }
        Ok(())
    }

    fn eviction_victim(
        &self,
        keep: &CacheKey,
        exclude: &[CacheKey],
        ctx: &dyn Fn() -> Context,
    ) -> Result<Option<(CacheKey, u64)>, Error> {
        let meta = self.meta(ctx)?;
        let start = *CacheKey::pseudo_random(self.next_tick()).as_bytes();
        let mut best: Option<(CacheKey, u64, u64)> = None;
        let mut seen = 0;
        let from = self
            .db
            .iterator_cf(meta, IteratorMode::From(&start, Direction::Forward));
        let wrapped = self.db.iterator_cf(meta, IteratorMode::Start);
        for row in from.chain(wrapped) {
            let (k, v) = row.map_err(|e| self.err(e, ctx()))?;
            let (Some(key), Some((size, tick))) = (decode_key(&k), decode_meta(&v)) else {
                continue;
            };
            if key == *keep || exclude.contains(&key) {
                continue;
            }
            if best.is_none_or(|(_, _, t)| tick < t) {
                best = Some((key, size, tick));
            }
            seen += 1;
            if seen == EVICTION_SAMPLE {
                break;
            }
        }
        Ok(best.map(|(k, size, _)| (k, size)))
    }

    pub(crate) fn put(&self, key: &CacheKey, value: &[u8]) -> Result<(), Error> {
        let ctx = || self.ctx(Op::Put, Some(key));
        self.writable(Op::Put, Some(key))?;
        let size = value.len() as u64;
        if size > self.max_value {
            return Err(Error::Capacity {
                context: ctx(),
                size,
                limit: self.max_value,
            });
        }
        let meta = self.meta(&ctx)?;
        let mut totals = self.writer.lock();
        let mut t = Totals {
            bytes: totals.bytes,
            entries: totals.entries,
        };
        // Recency first, in its own batch, so the eviction sample below sees it.
        self.write_touches(&ctx)?;
        let mut batch = WriteBatch::default();
        let old = self
            .db
            .get_pinned_cf(meta, key.as_bytes())
            .map_err(|e| self.err(e, ctx()))?
            .and_then(|v| decode_meta(&v));
        if let Some((old_size, _)) = old {
            t.bytes = t.bytes.saturating_sub(old_size);
            t.entries = t.entries.saturating_sub(1);
        }
        // Victims are only deleted when the batch commits, so the sampler must skip them.
        let mut victims = Vec::new();
        while t.bytes + size > self.capacity {
            let Some((victim, victim_size)) = self.eviction_victim(key, &victims, &ctx)? else {
                break;
            };
            batch.delete(victim.as_bytes());
            batch.delete_cf(meta, victim.as_bytes());
            t.bytes = t.bytes.saturating_sub(victim_size);
            t.entries = t.entries.saturating_sub(1);
            victims.push(victim);
        }
        batch.put(key.as_bytes(), value);
        batch.put_cf(meta, key.as_bytes(), encode_meta(size, self.next_tick()));
        t.bytes += size;
        t.entries += 1;
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(|e| self.err(e, ctx()))?;
        if !victims.is_empty() {
            tracing::debug!(backend = %self.name, evicted = victims.len(), "evicted least recently used entries");
        }
        *totals = t;
        self.publish(&totals);
        Ok(())
    }

    pub(crate) fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error> {
        let value = self
            .db
            .get_pinned(key.as_bytes())
            .map_err(|e| self.err(e, self.ctx(Op::Get, Some(key))))?
            .map(|v| Bytes::copy_from_slice(&v));
        if value.is_some() && !self.read_only {
            self.touch(key);
        }
        Ok(value)
    }

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

    pub(crate) fn flush_touches(&self) -> Result<(), Error> {
        if self.read_only || self.touches.lock().is_empty() {
            return Ok(());
        }
        let ctx = || self.ctx(Op::Get, None);
        let _totals = self.writer.lock();
        self.write_touches(&ctx)
    }

    /// Writes pending recency; the caller holds the writer lock.
    fn write_touches(&self, ctx: &dyn Fn() -> Context) -> Result<(), Error> {
        if self.touches.lock().is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        self.apply_touches(&mut batch, ctx)?;
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(|e| self.err(e, ctx()))
    }

    pub(crate) fn delete(&self, key: &CacheKey) -> Result<(), Error> {
        let ctx = || self.ctx(Op::Delete, Some(key));
        self.writable(Op::Delete, Some(key))?;
        let meta = self.meta(&ctx)?;
        let mut totals = self.writer.lock();
        let old = self
            .db
            .get_pinned_cf(meta, key.as_bytes())
            .map_err(|e| self.err(e, ctx()))?
            .and_then(|v| decode_meta(&v));
        let Some((size, _)) = old else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        batch.delete(key.as_bytes());
        batch.delete_cf(meta, key.as_bytes());
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(|e| self.err(e, ctx()))?;
        totals.bytes = totals.bytes.saturating_sub(size);
        totals.entries = totals.entries.saturating_sub(1);
        self.publish(&totals);
        Ok(())
    }

    /// Deletes least recently used entries (exact order, by a full scan of the metadata) until
    /// the values total at most `max_bytes`. Returns how many were deleted.
    pub(crate) fn shrink_to(&self, max_bytes: u64) -> Result<u64, Error> {
        let ctx = || self.ctx(Op::Delete, None);
        self.writable(Op::Delete, None)?;
        let meta = self.meta(&ctx)?;
        let mut totals = self.writer.lock();
        self.write_touches(&ctx)?;
        if totals.bytes <= max_bytes {
            return Ok(0);
        }
        let mut by_use = Vec::new();
        for row in self.db.iterator_cf(meta, IteratorMode::Start) {
            let (k, v) = row.map_err(|e| self.err(e, ctx()))?;
            if let (Some(key), Some((size, tick))) = (decode_key(&k), decode_meta(&v)) {
                by_use.push((tick, key, size));
            }
        }
        by_use.sort_unstable();
        let mut batch = WriteBatch::default();
        let mut bytes = totals.bytes;
        let mut evicted = 0u64;
        for (_, key, size) in by_use {
            if bytes <= max_bytes {
                break;
            }
            batch.delete(key.as_bytes());
            batch.delete_cf(meta, key.as_bytes());
            bytes = bytes.saturating_sub(size);
            evicted += 1;
        }
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(|e| self.err(e, ctx()))?;
        totals.bytes = bytes;
        totals.entries = totals.entries.saturating_sub(evicted);
        self.publish(&totals);
        Ok(evicted)
    }

    pub(crate) fn contains(&self, key: &CacheKey) -> Result<bool, Error> {
        let ctx = || self.ctx(Op::Contains, Some(key));
        let meta = self.meta(&ctx)?;
        Ok(self
            .db
            .get_pinned_cf(meta, key.as_bytes())
            .map_err(|e| self.err(e, ctx()))?
            .is_some())
    }

    pub(crate) fn clear(&self) -> Result<(), Error> {
        let ctx = || self.ctx(Op::Clear, None);
        self.writable(Op::Clear, None)?;
        let meta = self.meta(&ctx)?;
        let mut totals = self.writer.lock();
        self.touches.lock().clear();
        // A 33-byte end sorts after every 32-byte key.
        let (from, to) = ([0u8; 32], [0xffu8; 33]);
        let mut batch = WriteBatch::default();
        batch.delete_range(&from[..], &to[..]);
        batch.delete_range_cf(meta, &from[..], &to[..]);
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(|e| self.err(e, ctx()))?;
        *totals = Totals::default();
        self.publish(&totals);
        Ok(())
    }

    pub(crate) fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage, Error> {
        let ctx = || self.ctx(Op::List, None);
        let limit = limit.max(1);
        let meta = self.meta(&ctx)?;
        let start = after.map(|a| *a.as_bytes());
        let mode = match &start {
            Some(s) => IteratorMode::From(s, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut entries = Vec::new();
        let mut more = false;
        for row in self.db.iterator_cf(meta, mode) {
            let (k, v) = row.map_err(|e| self.err(e, ctx()))?;
            let (Some(key), Some((size, _))) = (decode_key(&k), decode_meta(&v)) else {
                continue;
            };
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(KeyInfo { key, size });
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
