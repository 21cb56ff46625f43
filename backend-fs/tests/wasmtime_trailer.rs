//! Pins the wasmtime behaviour the file tier's layout relies on.
//!
//! warmcache's envelope puts its metadata and tag *after* the payload, so an entry file starts
//! with the compiled artifact and can be handed to `Module::deserialize_open_file`, which maps
//! the file from offset 0. That only works while wasmtime accepts bytes appended after an
//! artifact. If a wasmtime upgrade stops accepting them, this test fails, and the file tier must
//! move the envelope into a side file.

#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::io::Read;

use futures::executor::block_on;
use warmcache_core::{Backend, Integrity, KeyBuilder};
use warmcache_fs::FsBackend;
use wasmtime::{Engine, Instance, Module, Store};

const WAT: &str = r#"(module (func (export "answer") (result i32) i32.const 42))"#;

fn call_answer(engine: &Engine, module: &Module) -> i32 {
    let mut store = Store::new(engine, ());
    let instance = Instance::new(&mut store, module, &[]).unwrap();
    let answer = instance
        .get_typed_func::<(), i32>(&mut store, "answer")
        .unwrap();
    answer.call(&mut store, ()).unwrap()
}

#[test]
fn an_artifact_with_the_envelope_appended_still_loads() {
    let engine = Engine::default();
    let artifact = engine.precompile_module(WAT.as_bytes()).unwrap();
    let key = KeyBuilder::new("pin").bytes(WAT.as_bytes()).finish();
    let integrity = Integrity::keyed(b"pin test secret");
    let sealed = integrity.seal(&key, 1, "wasmtime 48", &artifact);
    assert_eq!(
        &sealed[..artifact.len()],
        &artifact[..],
        "payload is not at offset 0"
    );
    assert!(sealed.len() > artifact.len());

    let dir = tempfile::tempdir().unwrap();
    let fs = FsBackend::open(dir.path()).unwrap();
    block_on(fs.put(&key, sealed.clone())).unwrap();

    // Verify over the file's bytes first: no unverified byte reaches wasmtime.
    let mut file = block_on(fs.open_file(&key)).unwrap().unwrap();
    let mut on_disk = Vec::new();
    file.read_to_end(&mut on_disk).unwrap();
    let (_, range) = integrity.verify(&key, None, &on_disk).unwrap();
    assert_eq!(range, 0..artifact.len());

    let file = block_on(fs.open_file(&key)).unwrap().unwrap();
    // SAFETY: the file was produced by `precompile_module` of this engine and verified above.
    let mapped = unsafe { Module::deserialize_open_file(&engine, file) }.unwrap();
    assert_eq!(call_answer(&engine, &mapped), 42);

    let path = dir
        .path()
        .join("entries")
        .join(&key.to_hex()[..2])
        .join(key.to_hex());
    // SAFETY: as above.
    let by_path = unsafe { Module::deserialize_file(&engine, &path) }.unwrap();
    assert_eq!(call_answer(&engine, &by_path), 42);

    // SAFETY: as above; the same bytes from memory, trailer included.
    let from_bytes = unsafe { Module::deserialize(&engine, &sealed[..]) }.unwrap();
    assert_eq!(call_answer(&engine, &from_bytes), 42);
}
