//! The opt-in "verified since last change" mode of a file tier: an entry file that verified once
//! is loaded without hashing while it is unchanged; any write to it, a forged record or a record
//! of another secret brings back the full check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{call_answer, many_functions};
use warmcache_core::{Tier, Tiered, VerifiedFiles};
use warmcache_fs::FsBackend;
use warmcache_wasmtime::ModuleCache;
use wasmtime::Engine;

/// A cache as a new process would have it: its own backend and an empty in-process tier.
fn cache(dir: &Path, verified: bool) -> ModuleCache {
    let fs = Arc::new(FsBackend::open(dir.join("files")).unwrap());
    let mut tier = Tier::new(fs);
    if verified {
        tier = tier.verified_files(VerifiedFiles::open(dir.join("verified")).unwrap());
    }
    ModuleCache::new(Tiered::builder().tier(tier).build())
}

/// Loads the module through a fresh cache; returns (trusted loads, corrupt, compiles).
fn load(dir: &Path, verified: bool, engine: &Engine, wat: &str) -> (u64, u64, u64) {
    let cache = cache(dir, verified);
    let module = cache.get_or_compile(engine, wat.as_bytes()).unwrap();
    assert_eq!(call_answer(engine, &module), 42);
    let stats = cache.stats();
    (
        stats.tiers[0].trusted_loads,
        stats.corrupt(),
        stats.computes,
    )
}

fn entry_file(dir: &Path) -> PathBuf {
    let mut files = Vec::new();
    let mut stack = vec![dir.join("files")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            if ty.is_dir() && e.file_name() != "locks" {
                stack.push(e.path());
            } else if ty.is_file() && e.file_name().len() == 64 {
                files.push(e.path());
            }
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    files.remove(0)
}

fn record(dir: &Path) -> PathBuf {
    let name = entry_file(dir).file_name().unwrap().to_owned();
    dir.join("verified").join(name)
}

#[test]
fn an_unchanged_file_is_verified_once_and_a_changed_one_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let wat = many_functions(200, 1);
    assert_eq!(load(dir.path(), true, &engine, &wat), (0, 0, 1));
    // A file verified within a second of being written is not recorded (racy): wait that out.
    assert_eq!(load(dir.path(), true, &engine, &wat), (0, 0, 0));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        load(dir.path(), true, &engine, &wat),
        (0, 0, 0),
        "full check, recorded"
    );
    assert_eq!(
        load(dir.path(), true, &engine, &wat),
        (1, 0, 0),
        "unchanged: not hashed"
    );
    assert_eq!(load(dir.path(), true, &engine, &wat), (1, 0, 0));
    // Verifying every load stays the default.
    assert_eq!(load(dir.path(), false, &engine, &wat), (0, 0, 0));

    // Damage written through the filesystem changes the file's change time: checked in full,
    // found corrupt, recompiled.
    let path = entry_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(load(dir.path(), true, &engine, &wat), (0, 1, 1));
}

#[test]
fn a_forged_record_or_another_secret_brings_back_the_full_check() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let wat = many_functions(200, 2);
    load(dir.path(), true, &engine, &wat);
    std::thread::sleep(Duration::from_millis(1100));
    load(dir.path(), true, &engine, &wat);
    assert_eq!(load(dir.path(), true, &engine, &wat).0, 1);

    std::fs::write(record(dir.path()), [7u8; 32]).unwrap();
    assert_eq!(
        load(dir.path(), true, &engine, &wat).0,
        0,
        "a forged record was trusted"
    );
    assert_eq!(
        load(dir.path(), true, &engine, &wat).0,
        1,
        "re-recorded after a full check"
    );

    // A new secret: every record of the old one is worthless.
    std::fs::remove_file(dir.path().join("verified").join("secret")).unwrap();
    assert_eq!(load(dir.path(), true, &engine, &wat).0, 0);
    assert_eq!(load(dir.path(), true, &engine, &wat).0, 1);
}

#[test]
fn a_planted_or_exposed_secret_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    VerifiedFiles::open(dir.path().join("verified")).unwrap();
    let secret = dir.path().join("verified").join("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = VerifiedFiles::open(dir.path().join("verified")).unwrap_err();
    assert!(err.to_string().contains("refusing the secret"), "{err}");

    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("planted")).unwrap();
    let err = VerifiedFiles::open(dir.path().join("planted")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// Issue 24, item 15: a record says a file verified under one secret; under another secret the
/// file is checked in full (and found forged), never loaded on the record's word.
#[test]
fn a_record_made_under_one_secret_says_nothing_under_another() {
    use warmcache_core::Integrity;
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let wat = many_functions(200, 3);
    let keyed = |secret: &[u8]| {
        let fs = Arc::new(FsBackend::open(dir.path().join("files")).unwrap());
        let verified = VerifiedFiles::open(dir.path().join("verified")).unwrap();
        ModuleCache::new(
            Tiered::builder()
                .integrity(Integrity::keyed(secret))
                .tier(Tier::new(fs).verified_files(verified))
                .build(),
        )
    };
    const FIRST: &[u8] = b"the first secret, at least 32 bytes long";
    const SECOND: &[u8] = b"the second secret, also 32 bytes or more";
    keyed(FIRST)
        .get_or_compile(&engine, wat.as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    keyed(FIRST)
        .get_or_compile(&engine, wat.as_bytes())
        .unwrap();
    let first = keyed(FIRST);
    first.get_or_compile(&engine, wat.as_bytes()).unwrap();
    assert_eq!(first.stats().tiers[0].trusted_loads, 1, "recorded");

    let second = keyed(SECOND);
    let module = second.get_or_compile(&engine, wat.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    let stats = second.stats();
    assert_eq!(
        (
            stats.tiers[0].trusted_loads,
            stats.tiers[0].forged,
            stats.computes
        ),
        (0, 1, 1),
        "an entry of another secret was loaded on a record's word: {stats:?}"
    );
}
