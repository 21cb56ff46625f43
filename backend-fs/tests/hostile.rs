//! A cache directory shared with a hostile co-tenant: planted links, special files, files others
//! can write, other writers' temporary files. Nothing outside the directory changes, no call
//! hangs, nothing is read without bound, and nothing mapped can change after verification.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use futures::executor::block_on;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, ErrorKind};
use warmcache_fs::FsBackend;

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn entry_path(root: &Path, key: &CacheKey) -> PathBuf {
    let hex = key.to_hex();
    root.join("entries").join(&hex[..2]).join(hex)
}

/// An entry as a cache writes it: a plain envelope of `payload` under `key(n)`.
fn envelope(n: u8, payload: &[u8]) -> Bytes {
    warmcache_core::Integrity::plain().seal(&key(n), 1, "test", payload)
}

/// A file outside the cache directory, with known contents.
fn outside_file(dir: &Path) -> PathBuf {
    let path = dir.join("precious.txt");
    fs::write(&path, b"do not touch").unwrap();
    path
}

/// Runs `f` on a thread and fails the test if it does not return within five seconds.
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the call hung on a planted special file")
}

#[test]
fn a_file_others_can_write_is_read_as_a_copy_not_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::open(dir.path()).unwrap();
    let entry = envelope(1, b"entry");
    block_on(fs.put(&key(1), entry.clone())).unwrap();
    let path = entry_path(dir.path(), &key(1));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o022,
        0,
        "entries are created writable by group or others"
    );
    assert!(block_on(fs.open_file(&key(1))).unwrap().is_some());

    fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
    let err = block_on(fs.open_file(&key(1))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSupported, "{err}");
    assert_eq!(block_on(fs.get(&key(1))).unwrap(), Some(entry));

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::hard_link(&path, dir.path().join("second-name")).unwrap();
    let err = block_on(fs.open_file(&key(1))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSupported, "{err}");
}

#[test]
fn a_file_of_another_user_is_not_mapped() {
    if is_root() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FsBackend::open(dir.path()).unwrap();
        block_on(fs.put(&key(1), Bytes::from_static(b"entry"))).unwrap();
        let path = entry_path(dir.path(), &key(1));
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let err = block_on(fs.open_file(&key(1))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotSupported, "{err}");
    } else {
        eprintln!("skipped: changing a file's owner needs root");
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

#[test]
fn an_entry_that_is_a_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let precious = outside_file(outside.path());
    let fs = FsBackend::open(dir.path()).unwrap();
    block_on(fs.put(&key(1), Bytes::from_static(b"entry"))).unwrap();
    let path = entry_path(dir.path(), &key(1));
    fs::remove_file(&path).unwrap();
    symlink(&precious, &path).unwrap();

    let err = block_on(fs.get(&key(1))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(block_on(fs.open_file(&key(1))).is_err());
    assert!(!block_on(fs.contains(&key(1))).unwrap());
    block_on(fs.delete(&key(1))).unwrap();
    assert_eq!(fs::read(&precious).unwrap(), b"do not touch");
}

#[test]
fn special_files_neither_hang_nor_read_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::builder(dir.path())
        .max_value_size(1 << 20)
        .open()
        .unwrap();
    for n in 1..=3 {
        block_on(fs.put(&key(n), Bytes::from_static(b"entry"))).unwrap();
        fs::remove_file(entry_path(dir.path(), &key(n))).unwrap();
    }
    let fifo = entry_path(dir.path(), &key(1));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    symlink("/dev/zero", entry_path(dir.path(), &key(2))).unwrap();
    // A regular file larger than any value the tier stores.
    let big = File::create(entry_path(dir.path(), &key(3))).unwrap();
    big.set_len(64 << 20).unwrap();

    for n in 1..=3 {
        let (get, open) = {
            let fs = fs.clone();
            within_seconds(move || {
                (
                    block_on(fs.get(&key(n))).map(|v| v.map(|b| b.len())),
                    block_on(fs.open_file(&key(n))).map(|f| f.is_some()),
                )
            })
        };
        let err = get.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "key {n}: {err}");
        if n < 3 {
            assert!(open.is_err(), "key {n}: a special file was handed out");
        }
    }
    // Scans (usage, eviction, clear) skip them too, and do not hang.
    let usage = {
        let fs = fs.clone();
        within_seconds(move || block_on(fs.usage()))
    };
    assert_eq!(usage.unwrap().entries, 1, "only the regular file counts");
}

#[test]
fn fixed_names_are_never_written_through_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let precious = outside_file(outside.path());
    let entries = dir.path().join("entries");
    fs::create_dir_all(&entries).unwrap();
    // The names a process of this pid used to create at fixed paths.
    symlink(
        &precious,
        entries.join(format!(".probe.{}", std::process::id())),
    )
    .unwrap();
    let marker_target = outside.path().join("created-through-marker");
    symlink(&marker_target, dir.path().join("WARMCACHE-FS")).unwrap();

    let fs = FsBackend::open(dir.path()).unwrap();
    block_on(fs.put(&key(1), Bytes::from_static(b"entry"))).unwrap();
    assert_eq!(fs::read(&precious).unwrap(), b"do not touch");
    assert!(
        !marker_target.exists(),
        "the marker was written through a dangling link"
    );
}

#[test]
fn a_linked_fan_out_directory_is_neither_scanned_nor_written() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let fs = FsBackend::open(dir.path()).unwrap();
    let victim = key(0xab);
    // Outside the cache: a file named exactly like an entry of fan-out directory "ab".
    let outside_entry = outside.path().join(victim.to_hex());
    fs::write(&outside_entry, b"not the cache's").unwrap();
    symlink(outside.path(), dir.path().join("entries").join("ab")).unwrap();

    block_on(fs.clear()).unwrap();
    assert!(block_on(fs.shrink_to(0)).is_ok());
    assert!(
        outside_entry.exists(),
        "clear or eviction deleted a file outside the cache"
    );
    assert_eq!(block_on(fs.usage()).unwrap().entries, 0);

    let err = block_on(fs.put(&victim, Bytes::from_static(b"new"))).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert_eq!(fs::read(&outside_entry).unwrap(), b"not the cache's");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
}

#[test]
fn another_writers_temporary_file_is_kept_while_it_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::open(dir.path()).unwrap();
    block_on(fs.put(&key(1), Bytes::from_static(b"entry"))).unwrap();
    let fan = entry_path(dir.path(), &key(1)).parent().unwrap().to_owned();
    // A writer in another PID namespace or host: its pid means nothing here (it is above
    // Linux's largest pid), but it holds the lock on its temporary file.
    let hex = key(1).to_hex();
    let live = fan.join(format!(".{hex}.4194305.{:016x}.tmp", 1));
    let held = File::create(&live).unwrap();
    held.lock().unwrap();
    let abandoned = fan.join(format!(".{hex}.4194305.{:016x}.tmp", 2));
    File::create(&abandoned).unwrap();
    let long_ago = SystemTime::now() - Duration::from_secs(3600 * 2);
    for path in [&live, &abandoned] {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }

    block_on(fs.usage()).unwrap();
    assert!(live.exists(), "a live writer's temporary file was removed");
    assert!(
        !abandoned.exists(),
        "an unlocked, old temporary file was left behind"
    );
    drop(held);
}

#[test]
fn planted_special_files_do_not_take_the_tier_out_of_service() {
    use warmcache_core::{Integrity, Tier, Tiered};
    let dir = tempfile::tempdir().unwrap();
    let fs = std::sync::Arc::new(FsBackend::open(dir.path()).unwrap());
    let good = key(9);
    block_on(fs.put(&good, Integrity::plain().seal(&good, 1, "t", b"good"))).unwrap();
    for n in 1..=8 {
        block_on(fs.put(&key(n), Bytes::from_static(b"x"))).unwrap();
        let path = entry_path(dir.path(), &key(n));
        fs::remove_file(&path).unwrap();
        symlink("/dev/zero", &path).unwrap();
    }
    let tiers = Tiered::builder()
        .tier(Tier::new(fs).circuit_breaker(2, Duration::from_secs(60)))
        .build();
    for n in 1..=8 {
        assert!(block_on(tiers.get(&key(n), 1)).is_none());
    }
    let hit = block_on(tiers.get(&good, 1)).expect("the read breaker opened on planted files");
    assert_eq!(hit.payload(), b"good");
    assert_eq!(tiers.stats()[0].errors, 8);
}

fn lock_path(root: &Path, key: &CacheKey) -> PathBuf {
    root.join("locks").join(key.to_hex())
}

/// Issue 24, item 6: a hard link planted at a lock's name is never written through (the lock
/// file was opened read-write and truncated, so a link to one of the victim's files emptied it).
#[test]
fn a_hard_link_planted_as_a_lock_file_is_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::open(dir.path().join("cache")).unwrap();
    let precious = outside_file(dir.path());
    fs::create_dir_all(dir.path().join("cache").join("locks")).unwrap();
    fs::hard_link(&precious, lock_path(&dir.path().join("cache"), &key(1))).unwrap();
    let taken = within_seconds(move || {
        block_on(fs.try_lease(&key(1), Duration::from_secs(10), "victim")).map(|l| l.is_some())
    });
    assert!(
        taken.is_err(),
        "a hard-linked lock file was honoured: {taken:?}"
    );
    assert_eq!(fs::read(&precious).unwrap(), b"do not touch");
}

/// Issue 24, items 5 and 12: lock files planted by someone else (links, another user's file)
/// neither stall a cold key for the coordination wait nor stop the tier's writes: each is
/// skipped, the value computed here and stored.
#[test]
fn planted_lock_files_neither_stall_nor_stop_writes() {
    use std::sync::Arc;
    use warmcache_core::bytes::Bytes;
    use warmcache_core::{BytesCodec, Cache, Coordination, Tier, Tiered};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let fs = Arc::new(FsBackend::open(&root).unwrap());
    let tiered = Tiered::builder()
        .tier(Tier::new(fs.clone()))
        .coordination(Coordination::new().wait(Duration::from_secs(600)))
        .build();
    let cache: Cache<Bytes, BytesCodec> =
        Cache::builder("hostile", BytesCodec).tiers(tiered).build();
    fs::create_dir_all(root.join("locks")).unwrap();
    let precious = outside_file(dir.path());
    let inputs: Vec<String> = (1..=8).map(|n| format!("module {n}")).collect();
    let keys: Vec<CacheKey> = inputs.iter().map(|i| cache.key_for(i)).collect();
    for (n, k) in keys.iter().enumerate() {
        let lock = lock_path(&root, k);
        match n % 3 {
            0 => symlink(&precious, &lock).unwrap(),
            1 => fs::hard_link(&precious, &lock).unwrap(),
            _ if is_root() => {
                fs::write(&lock, b"").unwrap();
                std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
            }
            _ => symlink("/nonexistent", &lock).unwrap(),
        }
    }
    let stored = within_seconds(move || {
        for input in &inputs {
            let value = cache
                .get_or_compute(input, |i| Ok::<_, std::io::Error>(Bytes::from(i.clone())))
                .unwrap();
            assert_eq!(&value[..], input.as_bytes());
        }
        let stats = cache.stats();
        assert_eq!(stats.computes, 8, "each module computed once");
        (
            keys.iter()
                .filter(|k| block_on(fs.contains(k)).unwrap())
                .count(),
            stats.tiers[0].lease_waits,
            stats.tiers[0].leases,
            stats.tiers[0].lease_errors,
        )
    });
    // Each planted lock is refused (a lease error), none is waited on.
    assert_eq!(
        stored,
        (8, 0, 0, 8),
        "(entries stored, lease waits, leases taken, lease errors)"
    );
    assert_eq!(fs::read(&precious).unwrap(), b"do not touch");
}

/// The most memory this process has held at once, in KiB (Linux's `VmHWM`).
fn peak_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Issue 24, item 9: a huge sparse file a co-tenant planted as an entry is not read: a file
/// this user did not write is read only up to the largest value the tier wrote (or the
/// configured bound), not up to the tier's capacity.
#[test]
fn a_planted_huge_sparse_entry_is_not_read_into_memory() {
    if !is_root() {
        eprintln!("skipped: planting another user's file needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::builder(dir.path())
        .capacity(8 << 30)
        .open()
        .unwrap();
    block_on(fs.put(&key(1), Bytes::from(vec![7u8; 4096]))).unwrap();
    let planted = entry_path(dir.path(), &key(2));
    fs::create_dir_all(planted.parent().unwrap()).unwrap();
    File::create(&planted).unwrap().set_len(3 << 30).unwrap();
    std::os::unix::fs::chown(&planted, Some(64102), Some(64102)).unwrap();
    let before = peak_kib();
    let err = block_on(fs.get(&key(2))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("largest"), "{err}");
    let grown_mib = (peak_kib() - before) / 1024;
    assert!(
        grown_mib < 512,
        "reading the planted file took {grown_mib} MiB"
    );
    // This user's own entries are read whole, and another user's up to the bound.
    assert_eq!(block_on(fs.get(&key(1))).unwrap().unwrap().len(), 4096);
    let small = entry_path(dir.path(), &key(3));
    fs::create_dir_all(small.parent().unwrap()).unwrap();
    let entry = envelope(3, &[1u8; 1000]);
    fs::write(&small, &entry).unwrap();
    std::os::unix::fs::chown(&small, Some(64102), Some(64102)).unwrap();
    assert_eq!(block_on(fs.get(&key(3))).unwrap().unwrap(), entry);
}

/// Issue 24, item 9: under the bound too, a file another user could have written is read only
/// when it holds the envelope it declares: no more bytes than its trailer accounts for.
#[test]
fn a_planted_file_is_read_only_as_far_as_its_envelope_declares() {
    if !is_root() {
        eprintln!("skipped: planting another user's file needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::open(dir.path()).unwrap();
    block_on(fs.put(&key(1), Bytes::from(vec![7u8; 4096]))).unwrap();
    let plant = |n: u8, len: u64, tail: &[u8]| {
        let path = entry_path(dir.path(), &key(n));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = File::create(&path).unwrap();
        file.set_len(len).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, tail, len - tail.len() as u64).unwrap();
        std::os::unix::fs::chown(&path, Some(64102), Some(64102)).unwrap();
    };
    // 200 MiB, under the default bound, ending in a real envelope's trailer that declares a few
    // bytes: the rest is not read.
    let planted = envelope(2, b"small");
    plant(2, 200 << 20, &planted);
    let before = peak_kib();
    let err = match block_on(fs.get(&key(2))) {
        Err(e) => e,
        Ok(read) => panic!("read {} bytes", read.map_or(0, |b| b.len())),
    };
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("envelope"), "{err}");
    let grown_mib = (peak_kib() - before) / 1024;
    assert!(
        grown_mib < 64,
        "reading the planted file took {grown_mib} MiB"
    );
    // The same envelope, whole: read.
    let whole = envelope(3, b"small");
    plant(3, whole.len() as u64, &whole);
    assert_eq!(block_on(fs.get(&key(3))).unwrap().unwrap(), whole);
}

/// A namespace keeps its entries in `keys/<namespace>/`, and a name that is not one plain path
/// segment is a configuration error, never a path.
#[test]
fn namespaces_are_one_segment_under_keys() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::builder(dir.path())
        .namespace("k0123abcd")
        .open()
        .unwrap();
    block_on(fs.put(&key(1), envelope(1, b"namespaced"))).unwrap();
    assert!(entry_path(&dir.path().join("keys").join("k0123abcd"), &key(1)).is_file());
    assert!(!entry_path(dir.path(), &key(1)).exists());
    for bad in ["../escape", "", "a/b", "."] {
        let err = FsBackend::builder(dir.path())
            .namespace(bad)
            .open()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad:?}: {err}");
    }
    assert!(!dir.path().join("escape").exists());
}

/// A pin is a file `pins/<key>`: one another user planted (in a directory they can write) is
/// not obeyed, so a co-tenant cannot keep their entries from eviction; this user's pin is.
#[test]
fn a_pin_another_user_planted_is_not_obeyed() {
    if !is_root() {
        eprintln!("skipped: planting another user's file needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::builder(dir.path())
        .capacity(1 << 20)
        .open()
        .unwrap();
    for n in [1, 2] {
        block_on(fs.put(&key(n), Bytes::from(vec![7u8; 4096]))).unwrap();
    }
    assert!(block_on(fs.pin(&key(1), true)).unwrap());
    let planted = dir.path().join("pins").join(key(2).to_hex());
    File::create(&planted).unwrap();
    std::os::unix::fs::chown(&planted, Some(64102), Some(64102)).unwrap();
    block_on(fs.shrink_to(0)).unwrap();
    assert!(
        block_on(fs.contains(&key(1))).unwrap(),
        "the pinned entry was evicted"
    );
    assert!(
        !block_on(fs.contains(&key(2))).unwrap(),
        "a pin another user planted kept its entry"
    );
}

/// Set, in a child run as the co-tenant, to the cache directory to plant a claim in.
const PLANT_ENV: &str = "WARMCACHE_FS_TEST_PLANT";
/// The co-tenant's uid (no passwd entry needed).
const COTENANT: u32 = 64102;

/// Run by the test below as the co-tenant's own process: writes an entry claiming a week of
/// compute through the file tier, then sets its use attribute to a billion uses at an
/// inflation no entry of the victim's can reach.
#[test]
fn cotenant_plants_a_costly_claim() {
    let Some(root) = std::env::var_os(PLANT_ENV) else {
        return;
    };
    let fs = FsBackend::builder(&root).open().unwrap();
    let origin = warmcache_core::Origin::new(1, "co-tenant").compute_ms(604_800_000);
    let claim = warmcache_core::Integrity::plain().seal_origin(
        &key(2),
        &origin,
        &[2u8; 4200],
        warmcache_core::Compression::None,
    );
    block_on(fs.put(&key(2), claim)).unwrap();
    let mut value = 1_000_000_000u64.to_le_bytes().to_vec();
    value.extend_from_slice(&1e300f64.to_le_bytes());
    let path = entry_path(Path::new(&root), &key(2));
    let flags = rustix::fs::XattrFlags::empty();
    rustix::fs::setxattr(&path, "user.warmcache.use", &value, flags).unwrap();
}

/// The compute time in another user's entry and the use attribute on it (uses, the inflation at
/// the last one) are theirs to write: they neither keep their entry from eviction by cost nor
/// raise this user's inflation. The co-tenant is a real process of another uid, writing in a
/// directory both can write.
#[test]
fn a_use_attribute_another_user_wrote_is_not_believed() {
    if !is_root() {
        eprintln!("skipped: running the co-tenant as another uid needs root");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = base.path().join("cache");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    // The test binary, where the co-tenant can run it (the target directory may be private).
    let bin = base.path().join("tests");
    let me = std::env::current_exe().unwrap();
    if fs::hard_link(&me, &bin).is_err() {
        fs::copy(&me, &bin).unwrap();
    }
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let planted = std::process::Command::new(&bin)
        .args(["--exact", "hostile::cotenant_plants_a_costly_claim"])
        .env(PLANT_ENV, &root)
        .uid(COTENANT)
        .gid(COTENANT)
        .output()
        .unwrap();
    assert!(
        planted.status.success(),
        "the co-tenant's process failed: {}",
        String::from_utf8_lossy(&planted.stdout)
    );
    match fs::metadata(entry_path(&root, &key(2))) {
        Ok(meta) => assert_eq!(meta.uid(), COTENANT),
        Err(e) => panic!("the co-tenant's entry is missing: {e}"),
    }
    let fs = FsBackend::builder(&root)
        .capacity(3 * 4096)
        .touch_interval(Duration::ZERO)
        .eviction(warmcache_core::backend::Eviction::Cost)
        .open()
        .unwrap();
    for n in [1, 3] {
        std::thread::sleep(Duration::from_millis(20));
        block_on(fs.put(&key(n), Bytes::from(vec![n; 4096]))).unwrap();
    }
    // Over the capacity: two of the three older entries go, the least worth first.
    block_on(fs.put(&key(4), Bytes::from(vec![4; 4096]))).unwrap();
    assert!(
        !block_on(fs.contains(&key(2))).unwrap(),
        "another user's claims of a week of compute and a billion uses kept their entry"
    );
    assert!(
        block_on(fs.contains(&key(3))).unwrap(),
        "this user's entry went instead of the other user's"
    );
}

/// The directory's `inflation` file is believed only when this user or root owns it, and is
/// replaced, never written through: a planted value or link neither skews eviction nor reaches
/// outside the cache.
#[test]
fn a_planted_inflation_file_is_neither_believed_nor_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let outside = outside_file(dir.path());
    let before = fs::read(&outside).unwrap();
    let root = dir.path().join("cache");
    let open = |capacity: u64| {
        FsBackend::builder(&root)
            .capacity(capacity)
            .eviction(warmcache_core::backend::Eviction::Cost)
            .open()
            .unwrap()
    };
    drop(open(1 << 20));
    symlink(&outside, root.join("inflation")).unwrap();
    let fs = open(3000);
    for n in 1..=4 {
        block_on(fs.put(&key(n), Bytes::from(vec![n; 1000]))).unwrap();
    }
    assert_eq!(
        fs::read(&outside).unwrap(),
        before,
        "written through the link"
    );
    assert!(
        fs::symlink_metadata(root.join("inflation"))
            .unwrap()
            .is_file()
    );
    if !is_root() {
        eprintln!("skipped the other user's file: changing a file's owner needs root");
        return;
    }
    // Another user's value, far above anything this directory reached.
    fs::remove_file(root.join("inflation")).unwrap();
    fs::write(root.join("inflation"), 1e300f64.to_le_bytes()).unwrap();
    std::os::unix::fs::chown(root.join("inflation"), Some(64102), Some(64102)).unwrap();
    let later = open(1 << 20);
    block_on(later.put(&key(9), Bytes::from_static(b"value"))).unwrap();
    let path = entry_path(&root, &key(9));
    let mut buf = [0u8; 16];
    if rustix::fs::lgetxattr(&path, "user.warmcache.use", &mut buf[..]) == Ok(16) {
        let inflation = f64::from_le_bytes(buf[8..].try_into().unwrap());
        assert!(
            inflation < 1.0,
            "stamped another user's inflation {inflation}"
        );
    }
}
