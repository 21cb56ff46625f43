//! Opening damaged, truncated and locked database files gives clear errors and loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use warmcache_conformance::test_name;

use futures::executor::block_on;
use warmcache_core::{Backend, CacheKey, ErrorKind, bytes::Bytes};
use warmcache_redb::RedbBackend;

const HOLDER_ENV: &str = "WARMCACHE_REDB_TEST_HOLD";

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn populated(path: &std::path::Path) {
    let b = RedbBackend::open(path).unwrap();
    block_on(async {
        for n in 0..20 {
            b.put(&key(n), Bytes::from(vec![n; 10_000])).await.unwrap();
        }
    });
}

#[test]
fn garbage_file_is_a_corrupt_error_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = RedbBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("open_or_recreate"), "{msg}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file was modified"
    );
}

#[test]
fn truncated_file_gives_a_clear_error_or_opens_consistently() {
    for keep in [0.1, 0.5, 0.9] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        populated(&path);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len((len as f64 * keep) as u64).unwrap();
        drop(file);
        match RedbBackend::open(&path) {
            Err(err) => {
                assert!(
                    matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::Io),
                    "truncated to {keep}: {err}"
                );
                assert!(err.to_string().contains("cache.redb"), "{err}");
            }
            // redb may repair a file cut after its last commit; then every value must be whole.
            Ok(b) => block_on(async {
                for n in 0..20 {
                    if let Ok(Some(v)) = b.get(&key(n)).await {
                        assert_eq!(v, Bytes::from(vec![n; 10_000]), "torn value after repair");
                    }
                }
            }),
        }
    }
}

#[test]
fn open_or_recreate_moves_a_corrupt_file_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    std::fs::write(
        &path,
        b"definitely not a database, but long enough to look at",
    )
    .unwrap();
    let b = RedbBackend::builder(&path).open_or_recreate().unwrap();
    block_on(b.put(&key(1), Bytes::from_static(b"fresh"))).unwrap();
    assert_eq!(
        block_on(b.get(&key(1))).unwrap().as_deref(),
        Some(&b"fresh"[..])
    );
    let aside = dir.path().join("cache.redb.corrupt");
    assert!(
        std::fs::read(aside)
            .unwrap()
            .starts_with(b"definitely not a database")
    );
}

#[test]
fn second_handle_in_one_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let _first = RedbBackend::open(&path).unwrap();
    let err = RedbBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    let err = RedbBackend::builder(&path).open_or_recreate().unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Locked,
        "a locked file must never be recreated"
    );
}

/// Holds the database open until stdin closes, when run as the child of the test below.
#[test]
fn lock_holder_child() {
    let Some(path) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    let _b = RedbBackend::open(&path).unwrap();
    println!("HOLDING");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
fn file_held_by_another_process_is_a_locked_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
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
    let held = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("HOLDING"));
    assert!(held, "child did not open the database");
    // Keep draining so the child can finish writing its test report.
    let drain = std::thread::spawn(move || lines.for_each(drop));
    let err = RedbBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("another process"), "{msg}");
    drop(child.stdin.take());
    child.wait().unwrap();
    drain.join().unwrap();
    // Once the other process is gone, the data is all there.
    let b = RedbBackend::open(&path).unwrap();
    assert_eq!(block_on(b.usage()).unwrap().entries, 20);
}

#[test]
fn bad_options_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let err = RedbBackend::builder(&path).capacity(0).open().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = RedbBackend::builder(&path)
        .capacity(100)
        .max_value_size(200)
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!path.exists(), "an invalid configuration created a file");
}

/// Issue 24, item 8: a `cache.redb` symlink planted in a shared directory is not followed (redb
/// created the file it pointed at, owned by the victim), and a planted hard link is not opened.
#[test]
fn a_planted_link_at_the_database_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let chosen = dir.path().join("chosen-by-the-attacker");
    std::os::unix::fs::symlink(&chosen, &path).unwrap();
    let err = RedbBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!chosen.exists(), "redb created the file the link points at");

    std::fs::remove_file(&path).unwrap();
    let precious = dir.path().join("precious");
    std::fs::write(&precious, b"do not touch").unwrap();
    std::fs::hard_link(&precious, &path).unwrap();
    let err = RedbBackend::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(std::fs::read(&precious).unwrap(), b"do not touch");
}

const GUARD_CHILD_ENV: &str = "WARMCACHE_GUARD_PANIC_CHILD";

/// Issue 24, item 17: a panic inside the storage engine, caught by `guard_panics`, prints
/// nothing (it printed "thread 'main' panicked at ..." with a backtrace before the guard caught
/// it); the error is the message. Checked in a child process, whose stderr is the terminal's.
#[test]
fn a_guarded_panic_prints_nothing() {
    use warmcache_core::Op;
    use warmcache_core::backend::guard_panics;
    if std::env::var_os(GUARD_CHILD_ENV).is_some() {
        let r: warmcache_core::Result<()> = guard_panics(
            || warmcache_core::Context::new("redb", Op::Get),
            "the file cache.redb",
            || unreachable!("a damaged page"),
        );
        println!("guarded: {}", r.unwrap_err().kind() == ErrorKind::Corrupt);
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &test_name(module_path!(), "a_guarded_panic_prints_nothing"),
            "--nocapture",
        ])
        .env(GUARD_CHILD_ENV, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("guarded: true"), "{stdout}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains("panicked"),
            "a guarded panic was printed:\n{text}"
        );
    }
}
