//! Locked, read-only, foreign and damaged databases give clear errors and lose nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use warmcache_conformance::test_name;

use futures::executor::block_on;
use warmcache_core::{Backend, CacheKey, ErrorKind, bytes::Bytes};
use warmcache_rocksdb::{RocksCompression, RocksDbBackend};

const HOLDER_ENV: &str = "WARMCACHE_ROCKSDB_TEST_HOLD";

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn populated(path: &std::path::Path) {
    let db = RocksDbBackend::open(path).unwrap();
    block_on(async {
        for n in 0..10 {
            db.put(&key(n), Bytes::from(vec![n; 100_000]))
                .await
                .unwrap();
        }
    });
}

/// Holds the database open until stdin closes, when run as the child of the test below.
#[test]
fn lock_holder_child() {
    let Some(path) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    let _db = RocksDbBackend::open(&path).unwrap();
    println!("HOLDING");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
fn a_database_held_by_another_process_is_locked_and_readable_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rocks");
    populated(&path);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            &test_name(module_path!(), "lock_holder_child"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("HOLDING"))
    );
    let drain = std::thread::spawn(move || lines.for_each(drop));

    let err = RocksDbBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("read-only"), "{msg}");

    let ro = RocksDbBackend::builder(&path)
        .read_only(true)
        .open()
        .unwrap();
    let v = block_on(ro.get(&key(3))).unwrap().unwrap();
    assert_eq!(v, Bytes::from(vec![3u8; 100_000]));
    assert_eq!(block_on(ro.usage()).unwrap().entries, 10);
    let err = block_on(ro.put(&key(99), Bytes::from_static(b"x"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSupported);
    drop(ro);

    drop(child.stdin.take());
    child.wait().unwrap();
    drain.join().unwrap();
    let db = RocksDbBackend::open(&path).unwrap();
    assert_eq!(block_on(db.usage()).unwrap().entries, 10);
}

#[test]
fn a_file_or_a_foreign_directory_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let err = RocksDbBackend::open(&file).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"hello");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("CURRENT"), b"garbage\n").unwrap();
    let err = RocksDbBackend::open(&foreign).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::Io),
        "{err}"
    );
    assert!(err.to_string().contains("foreign"), "{err}");
    assert_eq!(
        std::fs::read(foreign.join("CURRENT")).unwrap(),
        b"garbage\n"
    );
}

#[test]
fn data_survives_reopen_with_every_compression() {
    for compression in [
        RocksCompression::None,
        RocksCompression::Lz4,
        RocksCompression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rocks");
        {
            let db = RocksDbBackend::builder(&path)
                .compression(compression)
                .blob_threshold(1024)
                .open()
                .unwrap();
            block_on(db.put(&key(1), Bytes::from(vec![1u8; 1 << 20]))).unwrap();
            block_on(db.put(&key(2), Bytes::from_static(b"small"))).unwrap();
        }
        let db = RocksDbBackend::builder(&path)
            .compression(compression)
            .open()
            .unwrap();
        assert_eq!(block_on(db.get(&key(1))).unwrap().unwrap().len(), 1 << 20);
        assert_eq!(&block_on(db.get(&key(2))).unwrap().unwrap()[..], b"small");
        assert_eq!(block_on(db.usage()).unwrap().bytes, (1 << 20) + 5);
    }
}

#[test]
fn bad_options_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = RocksDbBackend::builder(dir.path().join("r"))
        .capacity(0)
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = RocksDbBackend::builder(dir.path().join("r"))
        .capacity(10)
        .max_value_size(20)
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn recently_read_entries_survive_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let db = RocksDbBackend::builder(dir.path().join("r"))
        .capacity(3000)
        .open()
        .unwrap();
    block_on(async {
        for n in 1..=3 {
            db.put(&key(n), Bytes::from(vec![n; 1000])).await.unwrap();
        }
        db.get(&key(1)).await.unwrap();
        db.put(&key(4), Bytes::from(vec![4; 1000])).await.unwrap();
        assert!(db.contains(&key(1)).await.unwrap());
        assert!(!db.contains(&key(2)).await.unwrap());
        assert_eq!(db.usage().await.unwrap().bytes, 3000);
    });
}
