//! `shrink_to`: maintenance eviction down to a size, least recently used first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::executor::block_on;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey};
use warmcache_fs::FsBackend;

#[test]
fn shrink_to_keeps_the_recently_used_entries_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FsBackend::builder(dir.path())
        .touch_interval(std::time::Duration::ZERO)
        .open()
        .unwrap();
    let keys: Vec<CacheKey> = (0..10).map(CacheKey::pseudo_random).collect();
    for key in &keys {
        block_on(backend.put(key, Bytes::from(vec![7u8; 1000]))).unwrap();
        // Distinct use times for the file tier's clock.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The first three are used again, so they are the most recent.
    for key in &keys[..3] {
        block_on(backend.get(key)).unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        block_on(backend.shrink_to(1 << 20)).unwrap(),
        0,
        "already under the limit"
    );
    let evicted = block_on(backend.shrink_to(4500)).unwrap();
    assert_eq!(evicted, 6);
    let usage = block_on(backend.usage()).unwrap();
    assert!(usage.bytes <= 4500, "{usage:?}");
    assert_eq!(usage.entries, 4);
    for key in &keys[..3] {
        assert!(
            block_on(backend.contains(key)).unwrap(),
            "a recently used entry was evicted"
        );
    }
    assert!(block_on(backend.contains(&keys[9])).unwrap());
}
