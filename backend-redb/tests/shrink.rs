//! `shrink_to`: maintenance eviction down to a size, least recently used first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::executor::block_on;
use warmcache_redb::RedbBackend;

#[test]
fn shrink_to_keeps_the_recently_used_entries_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RedbBackend::builder(dir.path().join("db.redb"))
        .open()
        .unwrap();
    let check = warmcache_conformance::maintenance::shrink_keeps_recently_used(&backend, |max| {
        backend.shrink_to(max)
    });
    block_on(check).unwrap();
}
