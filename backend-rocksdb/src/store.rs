//! The database: atomic write batches over two column families, with warmcache-core's
//! [`SampledLru`] for capacity and recency.
//!
//! Two column families change together in one atomic write batch: `default` (key -> value, large
//! values in blob files) and `meta` (key -> [`LruRecord`]: value size, ticks of write and last
//! use, uses, cost; 32 bytes, or 16 as earlier versions wrote them). Totals live
//! in memory (summed from `meta` on open) and eviction samples `meta` (see [`SampledLru`]).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use warmcache_core::backend::{
    BlockingBackend, Eviction, Limits, LruIndex, LruRecord, SampledLru, Totals, Visit, guard_panics,
};
use warmcache_core::{CacheKey, Capabilities, Context, Error, ListPage, Op, Result, Usage};

use crate::RocksDbBackend;
use crate::error::map;

pub(crate) const META: &str = "meta";

pub(crate) struct Store {
    db: DB,
    path: PathBuf,
    name: String,
    limits: Limits,
    read_only: bool,
    sync: bool,
    lru: SampledLru,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

fn decode_key(bytes: &[u8]) -> Option<CacheKey> {
    <[u8; 32]>::try_from(bytes).ok().map(CacheKey::from_bytes)
}

pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) limits: Limits,
    pub(crate) read_only: bool,
    pub(crate) sync: bool,
    pub(crate) touch_batch: usize,
    pub(crate) eviction: Eviction,
}

/// The `meta` column family as an [`LruIndex`].
struct MetaIndex<'a> {
    store: &'a Store,
    meta: &'a rocksdb::ColumnFamily,
    op: Op,
    /// On open, a record of neither length is corruption; elsewhere it is skipped.
    strict: bool,
}

impl LruIndex for MetaIndex<'_> {
    fn record(&self, key: &CacheKey) -> Result<Option<LruRecord>> {
        let found = self
            .store
            .db
            .get_pinned_cf(self.meta, key.as_bytes())
            .map_err(|e| self.store.err(e, self.op, Some(key)))?;
        Ok(found.and_then(|v| LruRecord::from_bytes(*key, &v)))
    }

    fn scan(&self, from: Option<&CacheKey>, visit: Visit<'_>) -> Result<()> {
        let mode = match from {
            Some(k) => IteratorMode::From(k.as_bytes(), Direction::Forward),
            None => IteratorMode::Start,
        };
        for row in self.store.db.iterator_cf(self.meta, mode) {
            let (k, v) = row.map_err(|e| self.store.err(e, self.op, None))?;
            let record = decode_key(&k).and_then(|key| LruRecord::from_bytes(key, &v));
            let Some(record) = record else {
                if self.strict {
                    return Err(Error::corrupt(
                        self.store.ctx(self.op, None),
                        "a metadata record is not a 32-byte key with a 16- or 32-byte value",
                    ));
                }
                continue;
            };
            if visit(record).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl Store {
    pub(crate) fn new(db: DB, path: PathBuf, s: Settings) -> Result<Self> {
        let store = Self {
            db,
            path,
            name: s.name,
            limits: s.limits,
            read_only: s.read_only,
            sync: s.sync,
            lru: SampledLru::new(s.touch_batch, s.eviction),
        };
        let mut index = store.index(Op::Open)?;
        index.strict = true;
        store.lru.load(&index)?;
        Ok(store)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn ctx(&self, op: Op, key: Option<&CacheKey>) -> Context {
        Context::maybe_key(self.name.clone(), op, key)
    }

    /// Runs one operation, turning a panic (in the bindings or the store's own code) into
    /// [`Error::Corrupt`]. RocksDB itself checksums its blocks and reports damage as an error.
    fn guard<T>(&self, op: Op, key: Option<&CacheKey>, f: impl FnOnce() -> Result<T>) -> Result<T> {
        guard_panics(|| self.ctx(op, key), &self.path.display().to_string(), f)
    }

    fn err(&self, e: rocksdb::Error, op: Op, key: Option<&CacheKey>) -> Error {
        map(e, self.ctx(op, key), &self.path)
    }

    fn index(&self, op: Op) -> Result<MetaIndex<'_>> {
        let meta = self.db.cf_handle(META).ok_or_else(|| {
            Error::corrupt(self.ctx(op, None), "the metadata column family is missing")
        })?;
        Ok(MetaIndex {
            store: self,
            meta,
            op,
            strict: false,
        })
    }

    fn writable(&self, op: Op, key: Option<&CacheKey>) -> Result<()> {
        if self.read_only {
            return Err(Error::NotSupported {
                context: self.ctx(op, key),
            });
        }
        Ok(())
    }

    fn commit(&self, batch: WriteBatch, op: Op, key: Option<&CacheKey>) -> Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| self.err(e, op, key))
    }

    /// Adds `victims` (removing values and records) to `batch`.
    fn remove_all(&self, batch: &mut WriteBatch, index: &MetaIndex<'_>, victims: &[LruRecord]) {
        for v in victims {
            batch.delete(v.key.as_bytes());
            batch.delete_cf(index.meta, v.key.as_bytes());
        }
        if !victims.is_empty() {
            tracing::debug!(backend = %self.name, evicted = victims.len(), "evicted least recently used entries");
        }
    }

    /// Writes pending read recency in its own batch; call under the accounting's writer lock,
    /// before sampling, so the sample sees it.
    fn write_touches(&self, index: &MetaIndex<'_>, op: Op) -> Result<()> {
        if !self.lru.has_touches() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for r in self.lru.take_touches(index)? {
            batch.put_cf(index.meta, r.key.as_bytes(), r.to_bytes());
        }
        self.commit(batch, op, None)
    }

    pub(crate) fn flush_touches(&self) -> Result<()> {
        if self.read_only || !self.lru.has_touches() {
            return Ok(());
        }
        let index = self.index(Op::Get)?;
        self.lru.write(|_| self.write_touches(&index, Op::Get))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.lru.closed(&self.name, self.flush_touches());
    }
}

impl BlockingBackend for RocksDbBackend {
    fn name(&self) -> &str {
        &self.store.name
    }

    fn capabilities(&self) -> Capabilities {
        self.store
            .limits
            .capabilities()
            .with_persistent(true)
            .with_pins(true)
    }

    fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        self.store.guard(Op::Put, Some(key), || {
            let s = &*self.store;
            s.writable(Op::Put, Some(key))?;
            let size = value.len() as u64;
            s.limits.check(&s.name, key, size)?;
            let index = s.index(Op::Put)?;
            s.lru.write(|totals| {
                s.write_touches(&index, Op::Put)?;
                let old = index.record(key)?;
                if let Some(old) = old {
                    totals.remove(old.size);
                }
                let victims = s
                    .lru
                    .victims(&index, totals, size, s.limits.capacity(), key)?;
                let mut batch = WriteBatch::default();
                s.remove_all(&mut batch, &index, &victims);
                batch.put(key.as_bytes(), &value);
                // A pinned key stays pinned across puts.
                let record = LruRecord {
                    pinned: old.is_some_and(|old| old.pinned),
                    ..s.lru.written(*key, &value)
                };
                batch.put_cf(index.meta, key.as_bytes(), record.to_bytes());
                s.commit(batch, Op::Put, Some(key))?;
                totals.add(size);
                Ok(())
            })
        })
    }

    /// Copies only the end of the value (pinned, not copied whole; BlobDB still reads the
    /// blob), and does not count as a use for eviction.
    fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        self.store.guard(Op::GetTail, Some(key), || {
            let s = &*self.store;
            Ok(s.db
                .get_pinned(key.as_bytes())
                .map_err(|e| s.err(e, Op::GetTail, Some(key)))?
                .map(|v| {
                    let start = v
                        .len()
                        .saturating_sub(usize::try_from(len).unwrap_or(usize::MAX));
                    Bytes::copy_from_slice(&v[start..])
                }))
        })
    }

    fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        self.store.guard(Op::Get, Some(key), || {
            let s = &*self.store;
            let value =
                s.db.get_pinned(key.as_bytes())
                    .map_err(|e| s.err(e, Op::Get, Some(key)))?
                    .map(|v| Bytes::copy_from_slice(&v));
            if value.is_some()
                && !s.read_only
                && s.lru.touch(key)
                && let Err(e) = s.flush_touches()
            {
                tracing::warn!(backend = %s.name, error = %e, "could not record read recency");
            }
            Ok(value)
        })
    }

    fn delete(&self, key: &CacheKey) -> Result<()> {
        self.store.guard(Op::Delete, Some(key), || {
            let s = &*self.store;
            s.writable(Op::Delete, Some(key))?;
            let index = s.index(Op::Delete)?;
            s.lru.write(|totals| {
                let Some(old) = index.record(key)? else {
                    return Ok(());
                };
                let mut batch = WriteBatch::default();
                s.remove_all(&mut batch, &index, &[old]);
                s.commit(batch, Op::Delete, Some(key))?;
                totals.remove(old.size);
                Ok(())
            })
        })
    }

    fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.store.guard(Op::Contains, Some(key), || {
            Ok(self.store.index(Op::Contains)?.record(key)?.is_some())
        })
    }

    fn clear(&self) -> Result<()> {
        self.store.guard(Op::Clear, None, || {
            let s = &*self.store;
            s.writable(Op::Clear, None)?;
            let index = s.index(Op::Clear)?;
            s.lru.write(|totals| {
                s.lru.forget_touches();
                // A 33-byte end sorts after every 32-byte key.
                let (from, to) = ([0u8; 32], [0xffu8; 33]);
                let mut batch = WriteBatch::default();
                batch.delete_range(&from[..], &to[..]);
                batch.delete_range_cf(index.meta, &from[..], &to[..]);
                s.commit(batch, Op::Clear, None)?;
                *totals = Totals::default();
                Ok(())
            })
        })
    }

    fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        self.store.guard(Op::List, None, || {
            SampledLru::page(&self.store.index(Op::List)?, after, limit)
        })
    }

    fn usage(&self) -> Result<Usage> {
        Ok(self.store.lru.usage())
    }

    /// The pin is a bit of the entry's `meta` record.
    fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        self.store.guard(Op::Pin, Some(key), || {
            let s = &*self.store;
            s.writable(Op::Pin, Some(key))?;
            let index = s.index(Op::Pin)?;
            s.lru.write(|_| {
                s.write_touches(&index, Op::Pin)?;
                let refused = |size, limit| Error::Capacity {
                    context: Context::with_key(s.name.clone(), Op::Pin, key),
                    size,
                    limit,
                };
                let capacity = s.limits.capacity();
                let Some(record) = SampledLru::pin(&index, key, pinned, capacity, refused)? else {
                    return Ok(false);
                };
                let mut batch = WriteBatch::default();
                batch.put_cf(index.meta, key.as_bytes(), record.to_bytes());
                s.commit(batch, Op::Pin, Some(key))?;
                Ok(true)
            })
        })
    }

    fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        self.store.guard(Op::Shrink, None, || {
            let s = &*self.store;
            s.writable(Op::Shrink, None)?;
            let index = s.index(Op::Shrink)?;
            s.lru.write(|totals| {
                s.write_touches(&index, Op::Shrink)?;
                let victims = s.lru.shrink_victims(&index, totals, max_bytes)?;
                if victims.is_empty() {
                    return Ok(0);
                }
                let mut batch = WriteBatch::default();
                s.remove_all(&mut batch, &index, &victims);
                s.commit(batch, Op::Shrink, None)?;
                Ok(victims.len() as u64)
            })
        })
    }
}
