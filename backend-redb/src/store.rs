//! The database file: transactions over two tables, with warmcache-core's [`SampledLru`] for
//! capacity and recency.
//!
//! # Layout
//!
//! Two tables: `entries` (key -> value) and `records` (key -> [`LruRecord`]: value size, ticks
//! of write and last use, uses, cost). Both change in the same durable transaction on every
//! put. Nothing else is written per put:
//! measured with `cargo bench -p warmcache-redb`, each extra B-tree a durable commit touches
//! costs about 10% on 4 KiB puts, so totals live in memory (summed from `records` on open) and
//! the eviction order is sampled from `records` instead of kept in an index (see
//! [`SampledLru`]).
//!
//! Databases written before records grew to 32 bytes have a `meta` table of (value size, tick)
//! instead; opening one for writing moves it into `records` in the open transaction.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, TableHandle,
    WriteTransaction,
};
use warmcache_core::backend::{
    BlockingBackend, Eviction, Limits, LruIndex, LruRecord, SampledLru, Totals, Visit, guard_panics,
};
use warmcache_core::{CacheKey, Capabilities, Context, Error, ListPage, Op, Result, Usage};

use crate::RedbBackend;
use crate::error::map;

/// key -> value
const ENTRIES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("warmcache_entries");
/// key -> [`LruRecord::to_bytes`]
const META: TableDefinition<[u8; 32], [u8; LruRecord::LEN]> =
    TableDefinition::new("warmcache_records");
/// key -> (value size, stored tick): the records of earlier versions, moved into [`META`] on
/// open.
const OLD_META: TableDefinition<[u8; 32], (u64, u64)> = TableDefinition::new("warmcache_meta");

pub(crate) struct Store {
    db: Database,
    path: PathBuf,
    name: String,
    limits: Limits,
    lru: SampledLru,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The `meta` table (read-only or inside a write) as an [`LruIndex`].
struct MetaIndex<'a, T> {
    table: &'a T,
    store: &'a Store,
    op: Op,
}

impl<T: ReadableTable<[u8; 32], [u8; LruRecord::LEN]>> LruIndex for MetaIndex<'_, T> {
    fn record(&self, key: &CacheKey) -> Result<Option<LruRecord>> {
        let found = self
            .table
            .get(*key.as_bytes())
            .map_err(|e| self.store.err(e, self.op, None))?;
        Ok(found.and_then(|g| LruRecord::from_bytes(*key, &g.value())))
    }

    fn scan(&self, from: Option<&CacheKey>, visit: Visit<'_>) -> Result<()> {
        let start = match from {
            Some(k) => Bound::Included(*k.as_bytes()),
            None => Bound::Unbounded,
        };
        let range = self
            .table
            .range::<[u8; 32]>((start, Bound::Unbounded))
            .map_err(|e| self.store.err(e, self.op, None))?;
        for row in range {
            let (k, v) = row.map_err(|e| self.store.err(e, self.op, None))?;
            let record = LruRecord::from_bytes(CacheKey::from_bytes(k.value()), &v.value());
            if record.is_some_and(|r| visit(r).is_break()) {
                break;
            }
        }
        Ok(())
    }
}

impl Store {
    pub(crate) fn open(
        db: Database,
        path: PathBuf,
        name: String,
        limits: Limits,
        touch_batch: usize,
        eviction: Eviction,
    ) -> Result<Self> {
        let store = Self {
            db,
            path,
            name,
            limits,
            lru: SampledLru::new(touch_batch, eviction),
        };
        let txn = store
            .db
            .begin_write()
            .map_err(|e| store.err(e, Op::Open, None))?;
        txn.open_table(ENTRIES)
            .map_err(|e| store.err(e, Op::Open, None))?;
        store.migrate(&txn)?;
        {
            let meta = txn
                .open_table(META)
                .map_err(|e| store.err(e, Op::Open, None))?;
            store.lru.load(&store.index(&meta, Op::Open))?;
        }
        txn.commit().map_err(|e| store.err(e, Op::Open, None))?;
        Ok(store)
    }

    /// Moves the records of an earlier version's `meta` table into `records`, once.
    fn migrate(&self, txn: &WriteTransaction) -> Result<()> {
        let err = |e: redb::Error| self.err(e, Op::Open, None);
        let old_name = OLD_META.name();
        let mut tables = txn.list_tables().map_err(|e| err(e.into()))?;
        if !tables.any(|t| t.name() == old_name) {
            return Ok(());
        }
        {
            let old = txn.open_table(OLD_META).map_err(|e| err(e.into()))?;
            let mut records = txn.open_table(META).map_err(|e| err(e.into()))?;
            for row in old.iter().map_err(|e| err(e.into()))? {
                let (k, v) = row.map_err(|e| err(e.into()))?;
                let (size, tick) = v.value();
                let record = LruRecord::new(CacheKey::from_bytes(k.value()), size, tick);
                records
                    .insert(k.value(), record.to_bytes())
                    .map_err(|e| err(e.into()))?;
            }
        }
        txn.delete_table(OLD_META).map_err(|e| err(e.into()))?;
        tracing::info!(backend = %self.name, path = %self.path.display(), "moved metadata records to the current layout");
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one operation on the database, turning a panic into [`Error::Corrupt`]: redb does
    /// not checksum pages on normal reads, and a damaged page can reach an `unreachable!()`
    /// inside it. The database stays usable for pages that are intact; the tier stack counts
    /// the error as a miss.
    pub(crate) fn guard<T>(
        &self,
        op: Op,
        key: Option<&CacheKey>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        guard_panics(
            || Context::maybe_key(self.name.clone(), op, key),
            &self.path.display().to_string(),
            f,
        )
    }

    fn err(&self, e: impl Into<redb::Error>, op: Op, key: Option<&CacheKey>) -> Error {
        map(
            e,
            Context::maybe_key(self.name.clone(), op, key),
            &self.path,
        )
    }

    fn index<'a, T>(&'a self, table: &'a T, op: Op) -> MetaIndex<'a, T> {
        MetaIndex {
            table,
            store: self,
            op,
        }
    }

    /// Writes batched read recency into `meta`.
    fn apply_touches(
        &self,
        meta: &mut Table<'_, [u8; 32], [u8; LruRecord::LEN]>,
        op: Op,
    ) -> Result<()> {
        for r in self.lru.take_touches(&self.index(meta, op))? {
            meta.insert(*r.key.as_bytes(), r.to_bytes())
                .map_err(|e| self.err(e, op, Some(&r.key)))?;
        }
        Ok(())
    }

    /// Removes `victims` from both tables.
    fn remove_all(&self, txn: &WriteTransaction, victims: &[LruRecord], op: Op) -> Result<()> {
        if victims.is_empty() {
            return Ok(());
        }
        let mut entries = txn.open_table(ENTRIES).map_err(|e| self.err(e, op, None))?;
        let mut meta = txn.open_table(META).map_err(|e| self.err(e, op, None))?;
        for v in victims {
            let k = *v.key.as_bytes();
            meta.remove(k).map_err(|e| self.err(e, op, Some(&v.key)))?;
            entries
                .remove(k)
                .map_err(|e| self.err(e, op, Some(&v.key)))?;
        }
        tracing::debug!(backend = %self.name, evicted = victims.len(), "evicted least recently used entries");
        Ok(())
    }

    /// Runs `f` in a write transaction under the accounting's writer lock, committing with
    /// `durability`.
    fn write<T>(
        &self,
        op: Op,
        key: Option<&CacheKey>,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction, &mut Totals) -> Result<T>,
    ) -> Result<T> {
        self.lru.write(|totals| {
            let mut txn = self.db.begin_write().map_err(|e| self.err(e, op, key))?;
            txn.set_durability(durability)
                .map_err(|e| Error::backend(Context::maybe_key(self.name.clone(), op, key), e))?;
            let value = f(&txn, totals)?;
            txn.commit().map_err(|e| self.err(e, op, key))?;
            Ok(value)
        })
    }

    /// Writes pending read recency in a non-durable transaction (the next durable put persists
    /// it; a crash loses only recency).
    pub(crate) fn flush_touches(&self) -> Result<()> {
        if !self.lru.has_touches() {
            return Ok(());
        }
        self.write(Op::Get, None, Durability::None, |txn, _| {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| self.err(e, Op::Get, None))?;
            self.apply_touches(&mut meta, Op::Get)
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let flushed = self.guard(Op::Put, None, || self.flush_touches());
        self.lru.closed(&self.name, flushed);
    }
}

impl RedbBackend {
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

impl BlockingBackend for RedbBackend {
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
            let size = value.len() as u64;
            s.limits.check(&s.name, key, size)?;
            let k = *key.as_bytes();
            s.write(Op::Put, Some(key), Durability::Immediate, |txn, totals| {
                let victims = {
                    let mut meta = txn
                        .open_table(META)
                        .map_err(|e| s.err(e, Op::Put, Some(key)))?;
                    s.apply_touches(&mut meta, Op::Put)?;
                    let index = s.index(&meta, Op::Put);
                    // Overwrites replace in place below; only the totals need the old size now.
                    let old = index.record(key)?;
                    if let Some(old) = old {
                        totals.remove(old.size);
                    }
                    let victims = s
                        .lru
                        .victims(&index, totals, size, s.limits.capacity(), key)?;
                    (victims, old.is_some_and(|old| old.pinned))
                };
                let (victims, pinned) = victims;
                s.remove_all(txn, &victims, Op::Put)?;
                let mut entries = txn
                    .open_table(ENTRIES)
                    .map_err(|e| s.err(e, Op::Put, Some(key)))?;
                let mut meta = txn
                    .open_table(META)
                    .map_err(|e| s.err(e, Op::Put, Some(key)))?;
                entries
                    .insert(k, value.as_ref())
                    .map_err(|e| s.err(e, Op::Put, Some(key)))?;
                // A pinned key stays pinned across puts.
                let record = LruRecord {
                    pinned,
                    ..s.lru.written(*key, &value)
                };
                meta.insert(k, record.to_bytes())
                    .map_err(|e| s.err(e, Op::Put, Some(key)))?;
                totals.add(size);
                Ok(())
            })
        })
    }

    /// Copies only the end of the stored value, and does not count as a use for eviction.
    fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        self.store.guard(Op::GetTail, Some(key), || {
            self.read_value(key, |v| Bytes::copy_from_slice(tail_of(v, len)))
        })
    }

    fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        self.store.guard(Op::Get, Some(key), || {
            let s = &*self.store;
            let value = self.read_value(key, Bytes::copy_from_slice)?;
            if value.is_some()
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
            s.write(
                Op::Delete,
                Some(key),
                Durability::Immediate,
                |txn, totals| {
                    let mut meta = txn
                        .open_table(META)
                        .map_err(|e| s.err(e, Op::Delete, Some(key)))?;
                    let old = meta
                        .remove(*key.as_bytes())
                        .map_err(|e| s.err(e, Op::Delete, Some(key)))?
                        .and_then(|g| LruRecord::from_bytes(*key, &g.value()))
                        .map(|r| r.size);
                    if let Some(size) = old {
                        let mut entries = txn
                            .open_table(ENTRIES)
                            .map_err(|e| s.err(e, Op::Delete, Some(key)))?;
                        entries
                            .remove(*key.as_bytes())
                            .map_err(|e| s.err(e, Op::Delete, Some(key)))?;
                        totals.remove(size);
                    }
                    Ok(())
                },
            )
        })
    }

    fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.store.guard(Op::Contains, Some(key), || {
            let s = &*self.store;
            let txn =
                s.db.begin_read()
                    .map_err(|e| s.err(e, Op::Contains, Some(key)))?;
            let meta = txn
                .open_table(META)
                .map_err(|e| s.err(e, Op::Contains, Some(key)))?;
            Ok(s.index(&meta, Op::Contains).record(key)?.is_some())
        })
    }

    fn clear(&self) -> Result<()> {
        self.store.guard(Op::Clear, None, || {
            let s = &*self.store;
            s.lru.forget_touches();
            s.write(Op::Clear, None, Durability::Immediate, |txn, totals| {
                let err = |e: redb::TableError| s.err(e, Op::Clear, None);
                txn.delete_table(ENTRIES).map_err(err)?;
                txn.delete_table(META).map_err(err)?;
                txn.open_table(ENTRIES).map_err(err)?;
                txn.open_table(META).map_err(err)?;
                *totals = Totals::default();
                Ok(())
            })
        })
    }

    fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        self.store.guard(Op::List, None, || {
            let s = &*self.store;
            let txn = s.db.begin_read().map_err(|e| s.err(e, Op::List, None))?;
            let meta = txn.open_table(META).map_err(|e| s.err(e, Op::List, None))?;
            SampledLru::page(&s.index(&meta, Op::List), after, limit)
        })
    }

    fn usage(&self) -> Result<Usage> {
        Ok(self.store.lru.usage())
    }

    /// The pin is a bit of the entry's `meta` record, written in one durable transaction.
    fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        self.store.guard(Op::Pin, Some(key), || {
            let s = &*self.store;
            s.write(Op::Pin, Some(key), Durability::Immediate, |txn, _| {
                let mut meta = txn
                    .open_table(META)
                    .map_err(|e| s.err(e, Op::Pin, Some(key)))?;
                s.apply_touches(&mut meta, Op::Pin)?;
                let refused = |size, limit| Error::Capacity {
                    context: Context::with_key(s.name.clone(), Op::Pin, key),
                    size,
                    limit,
                };
                let record = SampledLru::pin(
                    &s.index(&meta, Op::Pin),
                    key,
                    pinned,
                    s.limits.capacity(),
                    refused,
                )?;
                let Some(record) = record else {
                    return Ok(false);
                };
                meta.insert(*key.as_bytes(), record.to_bytes())
                    .map_err(|e| s.err(e, Op::Pin, Some(key)))?;
                Ok(true)
            })
        })
    }

    /// The file itself does not shrink; its free pages are reused.
    fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        self.store.guard(Op::Shrink, None, || {
            let s = &*self.store;
            s.write(Op::Shrink, None, Durability::Immediate, |txn, totals| {
                let victims = {
                    let mut meta = txn
                        .open_table(META)
                        .map_err(|e| s.err(e, Op::Shrink, None))?;
                    s.apply_touches(&mut meta, Op::Shrink)?;
                    s.lru
                        .shrink_victims(&s.index(&meta, Op::Shrink), totals, max_bytes)?
                };
                s.remove_all(txn, &victims, Op::Shrink)?;
                Ok(victims.len() as u64)
            })
        })
    }
}

impl RedbBackend {
    /// `key`'s value, mapped by `f` inside a read transaction (no recency recorded).
    fn read_value<T>(&self, key: &CacheKey, f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>> {
        let s = &*self.store;
        let txn =
            s.db.begin_read()
                .map_err(|e| s.err(e, Op::Get, Some(key)))?;
        let entries = txn
            .open_table(ENTRIES)
            .map_err(|e| s.err(e, Op::Get, Some(key)))?;
        Ok(entries
            .get(*key.as_bytes())
            .map_err(|e| s.err(e, Op::Get, Some(key)))?
            .map(|g| f(g.value())))
    }
}

/// The last `len` bytes of `value` (all of it when shorter).
fn tail_of(value: &[u8], len: u64) -> &[u8] {
    let start = value
        .len()
        .saturating_sub(usize::try_from(len).unwrap_or(usize::MAX));
    &value[start..]
}
