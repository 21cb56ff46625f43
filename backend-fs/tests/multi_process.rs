//! Four processes share one cache directory, writing and reading overlapping keys with eviction
//! running; afterwards every entry present verifies and no temporary file is left.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use warmcache_conformance::test_name;

use futures::executor::block_on;
use warmcache_core::{Backend, BackendExt, Integrity, KeyBuilder};
use warmcache_fs::FsBackend;

const WORKER_ENV: &str = "WARMCACHE_FS_TEST_WORKER";
const KEYS: u64 = 40;

fn key(n: u64) -> warmcache_core::CacheKey {
    KeyBuilder::new("multi").integer(n).finish()
}

fn open(root: &Path) -> FsBackend {
    FsBackend::builder(root)
        .capacity(2 << 20)
        .touch_interval(Duration::ZERO)
        .open()
        .unwrap()
}

/// The worker, when run as a child of the test below.
#[test]
fn worker() {
    let Some(spec) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    let spec = spec.into_string().unwrap();
    let (root, id) = spec.rsplit_once('|').unwrap();
    let id: u64 = id.parse().unwrap();
    let fs = open(Path::new(root));
    let integrity = Integrity::plain();
    block_on(async {
        for round in 0..60u64 {
            let n = (round * 7 + id * 3) % KEYS;
            let payload = vec![(id * 31 + round) as u8; 20_000 + (n as usize * 1000)];
            fs.put(&key(n), integrity.seal(&key(n), 1, "worker", &payload))
                .await
                .unwrap();
            let m = (round * 5 + id) % KEYS;
            if let Some(bytes) = fs.get(&key(m)).await.unwrap() {
                integrity
                    .open(&key(m), &bytes)
                    .unwrap_or_else(|e| panic!("worker {id} read a bad entry {m}: {e}"));
            }
        }
    });
}

#[test]
fn four_processes_share_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    drop(open(&root));
    let children: Vec<_> = (0..4)
        .map(|id| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    &test_name(module_path!(), "worker"),
                    "--exact",
                    "--test-threads=1",
                ])
                .env(WORKER_ENV, format!("{}|{id}", root.display()))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a worker failed");
    }
    let fs = open(&root);
    let integrity = Integrity::plain();
    block_on(async {
        let entries = fs.list_all().await.unwrap();
        assert!(!entries.is_empty());
        for e in &entries {
            let bytes = fs.get(&e.key).await.unwrap().unwrap();
            assert_eq!(bytes.len() as u64, e.size);
            integrity.open(&e.key, &bytes).unwrap();
        }
        // Eviction ran: 4 x 60 writes of 20-60 KB would not fit in 2 MiB.
        assert!(fs.usage().await.unwrap().bytes <= 2 << 20 | 1 << 20);
    });
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
