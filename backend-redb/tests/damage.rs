//! A damaged database file never panics the caller: redb does not checksum pages on normal
//! reads and can reach `unreachable!()` on a damaged page, so every call is guarded and damage
//! comes back as `Error::Corrupt` (a counted miss), at open and on any operation after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use futures::executor::block_on;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, ErrorKind};
use warmcache_redb::RedbBackend;

fn key(n: u32) -> CacheKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    CacheKey::from_bytes(bytes)
}

const ENTRIES: u32 = 200;

fn build(path: &Path) {
    let db = RedbBackend::builder(path).open().unwrap();
    for n in 0..ENTRIES {
        block_on(db.put(&key(n), Bytes::from(vec![n as u8; 700 + n as usize]))).unwrap();
    }
}

/// Opens the damaged copy and touches every entry; returns how many calls reported corruption.
fn exercise(path: &Path) -> usize {
    let db = match RedbBackend::builder(path).open() {
        Ok(db) => db,
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Io),
                "open of a damaged file: {e}"
            );
            return 1;
        }
    };
    let mut corrupt = 0;
    let mut note = |r: Result<(), warmcache_core::Error>| {
        if let Err(e) = r {
            assert!(
                matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Io),
                "damage reported as {e}"
            );
            corrupt += 1;
        }
    };
    for n in 0..ENTRIES {
        note(block_on(db.get(&key(n))).map(drop));
    }
    note(block_on(db.list(None, 1000)).map(drop));
    note(block_on(
        db.put(&key(ENTRIES + 1), Bytes::from_static(b"after damage")),
    ));
    note(block_on(db.delete(&key(3))));
    corrupt
}

#[test]
fn flipped_bytes_anywhere_in_the_file_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.redb");
    build(&original);
    let bytes = std::fs::read(&original).unwrap();
    let mut panics = Vec::new();
    let mut detected = 0;
    // One byte of each page's header in turn (page type, entry count: the bytes redb trusts
    // most), in every page of the file.
    let offsets = (4096..bytes.len())
        .step_by(4096)
        .flat_map(|page| (0..4).map(move |at| page + at));
    for (trial, offset) in offsets.enumerate() {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 0xff;
        let path = dir.path().join(format!("trial-{trial}.redb"));
        std::fs::write(&path, &damaged).unwrap();
        match std::panic::catch_unwind(|| exercise(&path)) {
            Ok(n) => detected += usize::from(n > 0),
            Err(_) => panics.push(offset),
        }
        let _ = std::fs::remove_file(&path);
    }
    assert!(
        panics.is_empty(),
        "a damaged page at these offsets panicked the caller: {panics:?}"
    );
    assert!(detected > 0, "no damage was ever reported");
}
