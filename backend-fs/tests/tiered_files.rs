//! `Tiered::get_file` over the file tier: verified mappings, damaged files, compressed entries
//! and promotion into a faster tier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::sync::Arc;

use futures::executor::block_on;
use warmcache_core::{Backend, CacheKey, Compression, Integrity, Origin, Tier, Tiered};
use warmcache_fs::FsBackend;

const KIND: u32 = 7;

fn payload() -> Vec<u8> {
    (0..3 << 20).map(|i: u32| (i % 251) as u8).collect()
}

fn fs(dir: &std::path::Path) -> Arc<FsBackend> {
    Arc::new(FsBackend::builder(dir).open().unwrap())
}

#[test]
fn a_verified_file_comes_back_open_with_the_payload_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let tiers = Tiered::builder().tier(Tier::new(fs(dir.path()))).build();
    let key = CacheKey::pseudo_random(1);
    let payload = payload();
    block_on(tiers.put(&key, &Origin::new(KIND, "test"), &payload));

    let hit = block_on(tiers.get_file(&key, KIND)).unwrap();
    let Some(mut file) = hit.file() else {
        panic!("expected a file hit");
    };
    assert_eq!(hit.payload(), &payload[..]);
    assert_eq!((hit.meta().kind, hit.tier()), (KIND, Some(0)));
    let mut start = vec![0; 16];
    file.read_exact(&mut start).unwrap();
    assert_eq!(start, payload[..16]);
    assert_eq!(tiers.stats()[0].hits, 1);
    assert!(block_on(tiers.get_file(&CacheKey::pseudo_random(2), KIND)).is_none());
}

#[test]
fn damaged_and_forged_files_are_counted_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let backend = fs(dir.path());
    let tiers = Tiered::builder()
        .tier(Tier::new(backend.clone()))
        .integrity(Integrity::keyed(b"thirty-two bytes of secret, or more"))
        .build();
    let key = CacheKey::pseudo_random(3);
    let sealed = tiers.integrity().seal(&key, KIND, "test", &payload());

    let mut damaged = sealed.to_vec();
    damaged[1000] ^= 4;
    block_on(backend.put(&key, damaged.into())).unwrap();
    assert!(block_on(tiers.get_file(&key, KIND)).is_none());
    assert!(
        !block_on(backend.contains(&key)).unwrap(),
        "damaged file kept"
    );

    let forged = Integrity::plain().seal(&key, KIND, "test", &payload());
    block_on(backend.put(&key, forged)).unwrap();
    assert!(block_on(tiers.get_file(&key, KIND)).is_none());

    block_on(backend.put(&key, sealed.slice(..10))).unwrap();
    assert!(block_on(tiers.get_file(&key, KIND)).is_none());

    let stats = &tiers.stats()[0];
    // With a secret, damage and forgery are indistinguishable; a truncated file is corrupt.
    assert_eq!(stats.forged + stats.corrupt, 3);
    assert_eq!(stats.hits, 0);
}

#[test]
fn compressed_entries_come_back_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let tiers = Tiered::builder()
        .tier(Tier::new(fs(dir.path())).compression(Compression::Zstd { level: 1 }))
        .build();
    let key = CacheKey::pseudo_random(4);
    let payload = payload();
    block_on(tiers.put(&key, &Origin::new(KIND, "test"), &payload));
    let hit = block_on(tiers.get_file(&key, KIND)).unwrap();
    assert!(hit.file().is_none(), "expected bytes");
    assert!(hit.meta().compressed);
    assert_eq!(hit.payload(), &payload[..]);
}

#[test]
fn a_file_hit_is_promoted_into_a_faster_tier() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Arc::new(warmcache_memory::MemoryBackend::with_capacity(64 << 20).unwrap());
    let files = fs(dir.path());
    let tiers = Tiered::builder()
        .tier(Tier::new(memory.clone()))
        .tier(Tier::new(files.clone()))
        .build();
    let key = CacheKey::pseudo_random(5);
    let payload = payload();
    let sealed = tiers.integrity().seal(&key, KIND, "test", &payload);
    block_on(files.put(&key, sealed.clone())).unwrap();

    let found = block_on(tiers.get_file(&key, KIND)).unwrap();
    assert!(found.file().is_some());
    assert_eq!(found.payload(), &payload[..]);
    assert_eq!(block_on(memory.get(&key)).unwrap().unwrap(), sealed);
    // Now the memory tier answers, as bytes.
    let again = block_on(tiers.get_file(&key, KIND)).unwrap();
    assert!(again.file().is_none());
    assert_eq!(again.tier(), Some(0));
}

#[test]
fn without_offered_files_entries_come_back_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(
        FsBackend::builder(dir.path())
            .offer_files(false)
            .open()
            .unwrap(),
    );
    assert!(!backend.capabilities().local_files);
    let tiers = Tiered::builder().tier(Tier::new(backend.clone())).build();
    let key = CacheKey::pseudo_random(6);
    block_on(tiers.put(&key, &Origin::new(KIND, "test"), b"payload"));
    let err = block_on(backend.open_file(&key)).unwrap_err();
    assert_eq!(err.kind(), warmcache_core::ErrorKind::NotSupported);
    let hit = block_on(tiers.get_file(&key, KIND)).unwrap();
    assert!(hit.file().is_none(), "expected bytes");
    assert_eq!(hit.payload(), b"payload");
}

fn entry_path(root: &std::path::Path, key: &CacheKey) -> std::path::PathBuf {
    let hex = key.to_hex();
    root.join("entries").join(&hex[..2]).join(hex)
}

/// Writes over the start of an entry file in place: what a process of the same user (a
/// container sharing the volume) can always do, and what a mapping of the file then shows.
fn overwrite_in_place(path: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[0xcc; 64], 0).unwrap();
}

/// Issue 24, item 7: with sealed copies, a verified entry is loaded from a copy in a memfd
/// sealed against writes, so a same-uid writer cannot change code after it verified. Without
/// them, the mapping shows the write (why one uid is one trust domain).
#[test]
fn a_sealed_copy_cannot_change_after_it_verified() {
    let dir = tempfile::tempdir().unwrap();
    let key = CacheKey::pseudo_random(11);
    let payload = payload();
    for sealed in [false, true] {
        let backend = fs(dir.path());
        let mut tier = Tier::new(backend);
        if sealed {
            tier = tier.sealed_copies();
        }
        let tiers = Tiered::builder().tier(tier).build();
        block_on(tiers.put(&key, &Origin::new(KIND, "test"), &payload));
        let hit = block_on(tiers.get_file(&key, KIND)).unwrap();
        assert!(hit.file().is_some());
        assert_eq!(hit.payload(), &payload[..]);
        overwrite_in_place(&entry_path(dir.path(), &key));
        if sealed {
            assert_eq!(hit.payload(), &payload[..], "the sealed copy changed");
            let seals = rustix::fs::fcntl_get_seals(hit.file().unwrap()).unwrap();
            assert!(seals.contains(rustix::fs::SealFlags::WRITE), "{seals:?}");
        } else {
            assert_eq!(
                hit.payload()[..64],
                [0xcc; 64],
                "a mapping shows writes to the file"
            );
        }
        block_on(tiers.delete(&key));
    }
}

/// Issue 24, item 7: skipping the hash on an unchanged file relies on nobody else being able to
/// write it, so verified-file records are not used on a directory other users can write.
#[test]
fn verified_files_are_not_used_on_a_directory_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let key = CacheKey::pseudo_random(12);
    let payload = payload();
    let secret = b"a secret of at least 32 bytes, for tests";
    let mut trusted = 0;
    for round in 0..3 {
        let verified = warmcache_core::VerifiedFiles::open(dir.path().join("verified")).unwrap();
        let tiers = Tiered::builder()
            .integrity(Integrity::keyed(secret))
            .tier(Tier::new(fs(&root)).verified_files(verified))
            .build();
        if round == 0 {
            block_on(tiers.put(&key, &Origin::new(KIND, "test"), &payload));
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        assert_eq!(
            block_on(tiers.get_file(&key, KIND)).unwrap().payload(),
            &payload[..]
        );
        trusted += tiers.stats()[0].trusted_loads;
    }
    assert_eq!(
        trusted, 0,
        "a file in a directory others can write was loaded unhashed"
    );
}
