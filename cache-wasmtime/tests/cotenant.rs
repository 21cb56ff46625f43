//! A co-tenant who can write an entry file must not change code that already verified: a file
//! others can write is loaded from a verified copy, never mapped, and only when a secret
//! authenticates it (without one it is not used at all).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::sync::Arc;
use warmcache_wasmtime::ContentHash;

use warmcache_core::{Integrity, Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_wasmtime::ModuleCache;
use wasmtime::{Engine, Instance, Module, Store};

const IMMEDIATE: i32 = 0x5ec0_de01;
const PATCHED: i32 = 0x5ec0_de02;

fn call(engine: &Engine, module: &Module) -> i32 {
    let mut store = Store::new(engine, ());
    let instance = Instance::new(&mut store, module, &[]).unwrap();
    let answer = instance
        .get_typed_func::<(), i32>(&mut store, "answer")
        .unwrap();
    answer.call(&mut store, ()).unwrap()
}

const SECRET: &[u8] = b"a secret of at least 32 bytes for the co-tenant test";

fn fs_cache(dir: &std::path::Path, integrity: Integrity) -> ModuleCache {
    let files = Arc::new(FsBackend::builder(dir).open().unwrap());
    ModuleCache::new(
        Tiered::builder()
            .integrity(integrity)
            .tier(Tier::new(files))
            .build(),
    )
}

/// Overwrites every occurrence of `from` in the file at `path` in place (same inode), as a
/// co-tenant with write permission could. Returns how many it patched.
fn patch_in_place(path: &std::path::Path, from: &[u8], to: &[u8]) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut patched = 0;
    for at in 0..bytes.len().saturating_sub(from.len()) {
        if &bytes[at..at + from.len()] == from {
            file.write_all_at(to, at as u64).unwrap();
            patched += 1;
        }
    }
    patched
}

#[test]
fn code_loaded_from_a_file_others_can_write_cannot_be_patched_after_verification() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let wat = format!(r#"(module (func (export "answer") (result i32) i32.const {IMMEDIATE}))"#);
    let key = {
        let cache = fs_cache(dir.path(), Integrity::keyed(SECRET));
        cache.get_or_compile(&engine, wat.as_bytes()).unwrap();
        cache.key_for(&engine, &ContentHash::of(wat.as_bytes()))
    };
    let hex = key.to_hex();
    let path = dir.path().join("entries").join(&hex[..2]).join(&hex);
    // The entry as a co-tenant in the cache directory's group could write it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();

    let cache = fs_cache(dir.path(), Integrity::keyed(SECRET));
    let module = cache.get_or_compile(&engine, wat.as_bytes()).unwrap();
    assert_eq!(cache.stats().computes, 0, "the entry should load");
    assert_eq!(call(&engine, &module), IMMEDIATE);
    let patched = patch_in_place(&path, &IMMEDIATE.to_le_bytes(), &PATCHED.to_le_bytes());
    assert!(patched > 0, "the immediate is not in the artifact");
    assert_eq!(
        call(&engine, &module),
        IMMEDIATE,
        "code changed after it was verified"
    );
}

/// Issue 24, item 1, as an embedder meets it: without a secret, an entry file that someone
/// else could have written is not used (a plain tag proves "undamaged", never "trusted").
#[test]
fn without_a_secret_a_file_others_can_write_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let wat = r#"(module (func (export "answer") (result i32) i32.const 7))"#;
    let key = {
        let cache = fs_cache(dir.path(), Integrity::plain());
        cache.get_or_compile(&engine, wat.as_bytes()).unwrap();
        cache.key_for(&engine, &ContentHash::of(wat.as_bytes()))
    };
    let hex = key.to_hex();
    let path = dir.path().join("entries").join(&hex[..2]).join(&hex);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();

    let cache = fs_cache(dir.path(), Integrity::plain());
    let module = cache.get_or_compile(&engine, wat.as_bytes()).unwrap();
    assert_eq!(cache.stats().computes, 1, "an untrusted entry was loaded");
    assert_eq!(call(&engine, &module), 7);
}
