//! Eviction by cost and least recent use; records of earlier versions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use futures::executor::block_on;
use warmcache_core::backend::Eviction;
use warmcache_core::{Backend, CacheKey, bytes::Bytes};
use warmcache_rocksdb::RocksDbBackend;

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

#[test]
fn cost_eviction_keeps_the_expensive_entry_that_lru_drops() {
    let open = |dir: &std::path::Path, capacity, policy| {
        let b = RocksDbBackend::builder(dir.join("db"))
            .capacity(capacity)
            .eviction(policy)
            .open()?;
        Ok(std::sync::Arc::new(b) as std::sync::Arc<dyn Backend>)
    };
    block_on(warmcache_conformance::checks::eviction_by_cost(&open)).unwrap();
}

#[test]
fn sixteen_byte_records_of_an_earlier_version_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&opts, &path, ["meta"]).unwrap();
        let meta = db.cf_handle("meta").unwrap();
        for n in 1..=3u8 {
            db.put(key(n).as_bytes(), [n; 1000]).unwrap();
            let pin: u64 = if n == 1 { 1 << 63 } else { 0 };
            let mut record = 1000u64.to_le_bytes().to_vec();
            record.extend_from_slice(&(u64::from(n) | pin).to_le_bytes());
            db.put_cf(&meta, key(n).as_bytes(), record).unwrap();
        }
    }
    let b = RocksDbBackend::builder(&path)
        .capacity(3000)
        .eviction(Eviction::Lru)
        .open()
        .unwrap();
    block_on(async {
        let usage = b.usage().await.unwrap();
        assert_eq!((usage.entries, usage.bytes), (3, 3000));
        // The pinned oldest stays; the next oldest makes room.
        b.put(&key(4), Bytes::from(vec![4u8; 1000])).await.unwrap();
        assert!(b.contains(&key(1)).await.unwrap(), "pin lost");
        assert!(!b.contains(&key(2)).await.unwrap());
        assert_eq!(b.get(&key(3)).await.unwrap().unwrap().len(), 1000);
    });
}
