//! A real full disk: a small tmpfs mounted by the test (as root; skipped with a message where
//! mounting is not allowed) under the file tier and under redb. Puts fail with a clear error,
//! nothing stored before is lost or torn, and `get_or_compile` still returns a working module.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::call_answer;
use futures::executor::block_on;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_redb::RedbBackend;
use warmcache_wasmtime::ModuleCache;
use wasmtime::Engine;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output();
        match status {
            Ok(out) if out.status.success() => Some(Self { _dir: dir, mount }),
            Ok(out) => {
                eprintln!(
                    "skipped: mounting a tmpfs was refused ({}); run as root to test a full disk",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount ({e})");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

fn key(n: u32) -> CacheKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_le_bytes());
    CacheKey::from_bytes(bytes)
}

fn value(n: u32) -> Bytes {
    Bytes::from(vec![n as u8; 100 << 10])
}

/// Fills `backend` until a put fails; returns how many went in, and the error.
fn fill(backend: &dyn Backend) -> (u32, warmcache_core::Error) {
    for n in 0..1000 {
        if let Err(e) = block_on(backend.put(&key(n), value(n))) {
            return (n, e);
        }
    }
    panic!("1000 puts of 100 KiB fit on a 4 MiB disk");
}

fn check_full_disk(open: impl Fn() -> Arc<dyn Backend>, what: &str) {
    let backend = open();
    let (stored, err) = fill(&*backend);
    assert!(stored > 0, "{what}: nothing fit");
    let message = err.to_string();
    assert!(
        message.contains("No space left") || message.contains("space"),
        "{what}: the error does not say the disk is full: {message}"
    );
    // Nothing acknowledged is lost or torn, before or after a reopen.
    let check = |backend: &dyn Backend, when: &str| {
        for n in 0..stored {
            let got = block_on(backend.get(&key(n))).unwrap();
            assert_eq!(got, Some(value(n)), "{what} {when}: entry {n} lost or torn");
        }
    };
    check(&*backend, "before reopen");
    drop(backend);
    let backend = open();
    check(&*backend, "after reopen");
    drop(backend);

    // The cache still hands out a working module though nothing more can be stored.
    let cache = ModuleCache::new(Tiered::builder().tier(Tier::new(open())).build());
    let engine = Engine::default();
    let module = cache
        .get_or_compile(&engine, common::ANSWER.as_bytes())
        .unwrap();
    assert_eq!(call_answer(&engine, &module), 42, "{what}");
}

#[test]
fn a_full_disk_under_the_file_tier() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let root = disk.path().join("files");
    check_full_disk(
        || Arc::new(FsBackend::builder(&root).capacity(1 << 30).open().unwrap()),
        "fs",
    );
}

#[test]
fn a_full_disk_under_redb() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let path = disk.path().join("cache.redb");
    check_full_disk(
        || {
            Arc::new(
                RedbBackend::builder(&path)
                    .capacity(1 << 30)
                    .open()
                    .unwrap(),
            )
        },
        "redb",
    );
}
