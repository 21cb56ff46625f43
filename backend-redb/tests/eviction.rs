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

#[test]
fn sampled_eviction_prefers_entries_not_read_recently() {
    // Real keys are uniform digests; eviction samples rely on that.
    let key = |n: u64| {
        warmcache_core::KeyBuilder::new("eviction")
            .integer(n)
            .finish()
    };
    let dir = tempfile::tempdir().unwrap();
    let b = RedbBackend::builder(dir.path().join("c.redb"))
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
