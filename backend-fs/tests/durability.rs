//! Every directory an acknowledged entry depends on is made durable: a new fan-out directory
//! (and a new `entries/`) is synced in its parent, so a power loss cannot drop the entry with it.
//! Proved by tracing a real writer process's system calls with `strace`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use warmcache_conformance::test_name;

use futures::executor::block_on;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey};
use warmcache_fs::FsBackend;

const CHILD_ENV: &str = "WARMCACHE_FS_DURABILITY_CHILD";

/// Whether the trace shows, after the `mkdir` of `dir`, an `fsync` of `parent`.
fn synced_after_mkdir(trace: &str, dir: &Path, parent: &Path) -> bool {
    let mkdir = format!("\"{}\"", dir.display());
    let fsync = format!("<{}>)", parent.display());
    let Some(made) = trace
        .lines()
        .position(|l| l.contains("mkdir") && l.contains(&mkdir) && l.contains("= 0"))
    else {
        panic!("the trace shows no mkdir of {}:\n{trace}", dir.display());
    };
    trace
        .lines()
        .skip(made)
        .any(|l| l.contains("fsync(") && l.contains(&fsync))
}

#[test]
fn new_directories_are_synced_in_their_parents() {
    if let Ok(root) = std::env::var(CHILD_ENV) {
        let fs = FsBackend::open(&root).unwrap();
        block_on(fs.put(&CacheKey::from_bytes([0xab; 32]), Bytes::from_static(b"x"))).unwrap();
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed (scripts/test.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap().join("cache");
    let trace_file = dir.path().join("trace");
    let status = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=mkdir,mkdirat,fsync,fdatasync",
            "-o",
        ])
        .arg(&trace_file)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &test_name(
                module_path!(),
                "new_directories_are_synced_in_their_parents",
            ),
        ])
        .env(CHILD_ENV, &root)
        .status()
        .unwrap();
    assert!(status.success(), "the traced writer failed: {status}");
    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let entries = root.join("entries");
    assert!(
        synced_after_mkdir(&trace, &entries, &root),
        "entries/ was created but the cache root was never synced after it:\n{trace}"
    );
    assert!(
        synced_after_mkdir(&trace, &entries.join("ab"), &entries),
        "a fan-out directory was created but entries/ was never synced after it:\n{trace}"
    );
}
