//! Eviction (least recently used, and by cost), with read recency batched; records of
//! earlier versions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use futures::executor::block_on;
use warmcache_core::backend::Eviction;
use warmcache_core::{Backend, CacheKey, bytes::Bytes};
use warmcache_redb::{RedbBackend, RedbBackendBuilder};

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn value() -> Bytes {
    Bytes::from(vec![1u8; 1000])
}

fn lru(path: impl Into<std::path::PathBuf>) -> RedbBackendBuilder {
    RedbBackend::builder(path).eviction(Eviction::Lru)
}

#[test]
fn cost_eviction_keeps_the_expensive_entry_that_lru_drops() {
    let open = |dir: &std::path::Path, capacity, policy| {
        let b = RedbBackend::builder(dir.join("c.redb"))
            .capacity(capacity)
            .eviction(policy)
            .open()?;
        Ok(std::sync::Arc::new(b) as std::sync::Arc<dyn Backend>)
    };
    block_on(warmcache_conformance::checks::eviction_by_cost(&open)).unwrap();
}

#[test]
fn records_of_an_earlier_version_are_moved_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.redb");
    // The layout before records grew: (size, tick with the pin in its top bit).
    let entries: redb::TableDefinition<[u8; 32], &[u8]> =
        redb::TableDefinition::new("warmcache_entries");
    let meta: redb::TableDefinition<[u8; 32], (u64, u64)> =
        redb::TableDefinition::new("warmcache_meta");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut e = txn.open_table(entries).unwrap();
            let mut m = txn.open_table(meta).unwrap();
            for n in 1..=3u8 {
                e.insert(*key(n).as_bytes(), &value()[..]).unwrap();
                let pin = if n == 1 { 1 << 63 } else { 0 };
                m.insert(*key(n).as_bytes(), (1000, u64::from(n) | pin))
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let b = lru(&path).capacity(3000).open().unwrap();
    block_on(async {
        let usage = b.usage().await.unwrap();
        assert_eq!((usage.entries, usage.bytes), (3, 3000));
        assert_eq!(b.get(&key(2)).await.unwrap(), Some(value()));
        // The pin came along: the oldest entry stays, the next oldest goes.
        b.put(&key(4), value()).await.unwrap();
        assert!(b.contains(&key(1)).await.unwrap(), "pin lost in the move");
        assert!(!b.contains(&key(3)).await.unwrap());
    });
    drop(b);
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    assert!(txn.open_table(meta).is_err(), "the old table is gone");
}

#[test]
fn a_recently_read_entry_survives_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let b = lru(dir.path().join("c.redb"))
        .capacity(3000)
        .open()
        .unwrap();
    block_on(async {
        for n in 1..=3 {
            b.put(&key(n), value()).await.unwrap();
        }
        // Read the oldest: it becomes the most recent.
        assert!(b.get(&key(1)).await.unwrap().is_some());
        b.put(&key(4), value()).await.unwrap();
        assert!(
            b.contains(&key(1)).await.unwrap(),
            "recently read entry evicted"
        );
        assert!(
            !b.contains(&key(2)).await.unwrap(),
            "least recently used entry kept"
        );
        assert!(b.contains(&key(3)).await.unwrap());
        assert!(b.contains(&key(4)).await.unwrap());
        let usage = b.usage().await.unwrap();
        assert_eq!((usage.entries, usage.bytes), (3, 3000));
    });
}

#[test]
fn recency_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.redb");
    {
        let b = lru(&path).capacity(3000).open().unwrap();
        block_on(async {
            for n in 1..=3 {
                b.put(&key(n), value()).await.unwrap();
            }
            b.get(&key(1)).await.unwrap();
        });
    }
    let b = lru(&path).capacity(3000).open().unwrap();
    block_on(async {
        b.put(&key(4), value()).await.unwrap();
        assert!(b.contains(&key(1)).await.unwrap(), "recency lost on close");
        assert!(!b.contains(&key(2)).await.unwrap());
    });
}

#[test]
fn reads_are_batched_into_few_write_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let b = lru(dir.path().join("c.redb"))
        .capacity(1 << 20)
        .touch_batch(4)
        .open()
        .unwrap();
    block_on(async {
        for n in 1..=8 {
            b.put(&key(n), value()).await.unwrap();
        }
        // Reads of 1..=4 fill one batch and are written; then 5 becomes oldest.
        for n in 1..=4 {
            b.get(&key(n)).await.unwrap();
        }
        let big = Bytes::from(vec![2u8; (1 << 20) - 7000]);
        b.put(&key(9), big).await.unwrap();
        for n in 1..=4 {
            assert!(b.contains(&key(n)).await.unwrap(), "read entry {n} evicted");
        }
        assert!(
            !b.contains(&key(5)).await.unwrap(),
            "oldest unread entry kept"
        );
    });
}

#[test]
fn sampled_eviction_prefers_entries_not_read_recently() {
    // Real keys are uniform digests; eviction samples rely on that.
    let key = |n: u64| {
        warmcache_core::KeyBuilder::new("eviction")
            .integer(n)
            .finish()
    };
    let dir = tempfile::tempdir().unwrap();
    let b = lru(dir.path().join("c.redb"))
        .capacity(100_000)
        .touch_batch(1)
        .open()
        .unwrap();
    block_on(async {
        for n in 0..100 {
            b.put(&key(n), value()).await.unwrap();
        }
        // The even half is read after every entry was written: the odd half is older.
        for n in (0..100).step_by(2) {
            b.get(&key(n)).await.unwrap();
        }
        for n in 100..120 {
            b.put(&key(n), value()).await.unwrap();
        }
        let mut recent_evicted = 0u32;
        let mut old_evicted = 0;
        for n in 0..100 {
            if !b.contains(&key(n)).await.unwrap() {
                if n % 2 == 0 {
                    recent_evicted += 1;
                } else {
                    old_evicted += 1;
                }
            }
        }
        assert_eq!(recent_evicted + old_evicted, 20);
        // Each victim is recent only if all 8 sampled entries are: (1/2)^8 per eviction.
        assert!(
            recent_evicted <= 2,
            "{recent_evicted} recently read entries evicted"
        );
        let usage = b.usage().await.unwrap();
        assert_eq!(usage.bytes, 100_000);
    });
}
