//! File-tier specifics: opened files, eviction by use, foreign and damaged files, unusable
//! directories and a full disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use warmcache_core::backend::Eviction;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, ErrorKind, Integrity, Tier, Tiered};
use warmcache_fs::FsBackend;

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn open(root: &Path, capacity: u64) -> FsBackend {
    open_evicting(root, capacity, Eviction::Lru)
}

fn open_evicting(root: &Path, capacity: u64, policy: Eviction) -> FsBackend {
    FsBackend::builder(root)
        .capacity(capacity)
        .touch_interval(Duration::ZERO)
        .eviction(policy)
        .open()
        .unwrap()
}

#[test]
fn cost_eviction_keeps_the_expensive_entry_that_lru_drops() {
    let open = |dir: &Path, capacity, policy| {
        Ok(Arc::new(open_evicting(dir, capacity, policy)) as Arc<dyn Backend>)
    };
    block_on(warmcache_conformance::checks::eviction_by_cost(&open)).unwrap();
}

#[test]
fn uses_are_counted_in_the_entry_files_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_evicting(dir.path(), 1 << 20, Eviction::Cost);
    block_on(fs.put(&key(1), Bytes::from_static(b"value"))).unwrap();
    for _ in 0..3 {
        block_on(fs.get(&key(1))).unwrap();
    }
    if let Some((uses, _)) = use_attribute(dir.path(), &key(1)) {
        assert_eq!(uses, 3);
    }
}

/// The `user.warmcache.use` attribute of `key`'s entry: (uses, inflation), or `None` where the
/// filesystem keeps no user attributes.
fn use_attribute(root: &Path, key: &CacheKey) -> Option<(u64, f64)> {
    let hex = key.to_hex();
    let path = root.join("entries").join(&hex[..2]).join(&hex);
    let mut buf = [0u8; 16];
    match rustix::fs::lgetxattr(&path, "user.warmcache.use", &mut buf[..]) {
        Ok(16) => Some((
            u64::from_le_bytes(buf[..8].try_into().unwrap()),
            f64::from_le_bytes(buf[8..].try_into().unwrap()),
        )),
        Err(rustix::io::Errno::NOTSUP) => {
            eprintln!(
                "skipped: {} has no user extended attributes",
                root.display()
            );
            None
        }
        other => panic!("the use attribute is missing: {other:?}"),
    }
}

/// Short-lived processes (each `warmcache run`) rarely evict: the inflation they stamp on what
/// they write and read must be the directory's, not 0, or every entry they touch would look
/// older than any other process's.
#[test]
fn a_process_that_never_evicted_stamps_the_directorys_inflation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let evicting = open_evicting(dir.path(), 3000, Eviction::Cost);
        for n in 1..=4 {
            block_on(evicting.put(&key(n), Bytes::from(vec![n; 1000]))).unwrap();
        }
        assert_eq!(block_on(evicting.usage()).unwrap().entries, 2);
    }
    let later = open_evicting(dir.path(), 1 << 20, Eviction::Cost);
    block_on(later.put(&key(9), Bytes::from_static(b"value"))).unwrap();
    if let Some((_, inflation)) = use_attribute(dir.path(), &key(9)) {
        assert!(inflation > 0.0, "stamped an inflation of {inflation}");
    }
}

#[test]
fn an_opened_file_survives_overwrite_and_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path(), 1 << 20);
    block_on(fs.put(&key(1), Bytes::from_static(b"first version"))).unwrap();
    let mut file = block_on(fs.open_file(&key(1))).unwrap().unwrap();
    block_on(fs.put(&key(1), Bytes::from_static(b"second"))).unwrap();
    block_on(fs.delete(&key(1))).unwrap();
    let mut old = String::new();
    file.read_to_string(&mut old).unwrap();
    assert_eq!(old, "first version");
    assert!(block_on(fs.open_file(&key(2))).unwrap().is_none());
    assert!(fs.capabilities().local_files);
}

#[test]
fn the_least_recently_used_entry_is_evicted_first() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path(), 3000);
    for n in 1..=3 {
        block_on(fs.put(&key(n), Bytes::from(vec![n; 1000]))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    block_on(fs.get(&key(1))).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    block_on(fs.put(&key(4), Bytes::from(vec![4; 1000]))).unwrap();
    assert!(
        block_on(fs.contains(&key(1))).unwrap(),
        "recently read entry evicted"
    );
    assert!(
        !block_on(fs.contains(&key(2))).unwrap(),
        "least recently used entry kept"
    );
    assert!(block_on(fs.contains(&key(4))).unwrap());
    assert!(block_on(fs.usage()).unwrap().bytes <= 3000);
}

#[test]
fn foreign_files_are_never_touched_and_damaged_entries_are_misses() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(open(dir.path(), 50_000));
    let fan = dir.path().join("entries").join(&key(9).to_hex()[..2]);
    std::fs::create_dir_all(&fan).unwrap();
    let foreign = [
        dir.path().join("notes.txt"),
        dir.path().join("entries").join("README"),
        fan.join("not-an-entry"),
        fan.join(format!("{}.bak", key(9).to_hex())),
    ];
    for f in &foreign {
        std::fs::write(f, b"someone else's").unwrap();
    }
    // A truncated entry under a valid name.
    let full = Integrity::plain().seal(&key(9), 1, "t", &[7u8; 5000]);
    std::fs::write(fan.join(key(9).to_hex()), &full[..1234]).unwrap();
    let tiers = Tiered::builder().tier(Tier::new(fs.clone())).build();
    assert!(block_on(tiers.get(&key(9), 1)).is_none());
    assert_eq!(tiers.stats()[0].corrupt, 1);
    assert!(
        !block_on(fs.contains(&key(9))).unwrap(),
        "damaged entry not removed"
    );
    // Fill past capacity and clear: foreign files stay, uncounted.
    for n in 0..20 {
        block_on(fs.put(&key(n), Bytes::from(vec![n; 5000]))).unwrap();
    }
    block_on(fs.clear()).unwrap();
    assert_eq!(block_on(fs.usage()).unwrap().entries, 0);
    for f in &foreign {
        assert_eq!(
            std::fs::read(f).unwrap(),
            b"someone else's",
            "{} touched",
            f.display()
        );
    }
}

#[test]
fn an_unusable_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = FsBackend::open(blocker.join("cache")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("a-file"), "{err}");

    let ro = dir.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    let root_user = std::fs::metadata(&ro).unwrap().uid() == 0;
    if root_user {
        // Permission bits do not bind root; the path above covers the error's shape.
        return;
    }
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
    let err = FsBackend::open(ro.join("cache")).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[test]
fn a_full_disk_fails_the_put_and_loses_nothing() {
    // A 256 KiB tmpfs stands in for a full disk; mounting needs privileges CI has as root.
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("skipping the full-disk case: cannot mount a tmpfs here");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let fs = open(&mnt.join("cache"), 1 << 30);
        block_on(fs.put(&key(1), Bytes::from(vec![1u8; 64 << 10]))).unwrap();
        let err = block_on(fs.put(&key(2), Bytes::from(vec![2u8; 1 << 20]))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.to_string().contains("cache"), "{err}");
        let kept = block_on(fs.get(&key(1))).unwrap().unwrap();
        assert_eq!(kept.len(), 64 << 10, "an existing entry was damaged");
        assert!(!block_on(fs.contains(&key(2))).unwrap());
        let temps = std::fs::read_dir(mnt.join("cache/entries").join(&key(2).to_hex()[..2]))
            .map(|d| d.flatten().count())
            .unwrap_or(0);
        assert_eq!(temps, 0, "the failed write left a file");
    });
    let _ = Command::new("umount").arg(&mnt).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
