//! Least-recently-used eviction, with read recency batched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use futures::executor::block_on;
use warmcache_core::{Backend, CacheKey, bytes::Bytes};
use warmcache_redb::RedbBackend;

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn value() -> Bytes {
    Bytes::from(vec![1u8; 1000])
}

#[test]
fn a_recently_read_entry_survives_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::builder(dir.path().join("c.redb"))
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
        let b = RedbBackend::builder(&path).capacity(3000).open().unwrap();
        block_on(async {
            for n in 1..=3 {
                b.put(&key(n), value()).await.unwrap();
            }
            b.get(&key(1)).await.unwrap();
        });
    }
    let b = RedbBackend::builder(&path).capacity(3000).open().unwrap();
    block_on(async {
        b.put(&key(4), value()).await.unwrap();
        assert!(b.contains(&key(1)).await.unwrap(), "recency lost on close");
        assert!(!b.contains(&key(2)).await.unwrap());
    });
}

#[test]
fn reads_are_batched_into_few_write_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::builder(dir.path().join("c.redb"))
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
