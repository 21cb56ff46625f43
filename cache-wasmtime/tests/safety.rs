//! Safety of deserialization: bytes from every failure class never reach wasmtime's
//! `deserialize`, verified-but-incompatible entries are recompiled and overwritten, and bad
//! input is a clear error that caches nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use warmcache_wasmtime::{ContentHash, Wasm};

use std::sync::Arc;

use bytes::Bytes;
use common::{ANSWER, call_answer, memory_tiers};
use futures::executor::block_on;
use warmcache_core::{Backend, CacheKey, Integrity, Tier, Tiered};
use warmcache_memory::MemoryBackend;
use warmcache_wasmtime::{ArtifactKind, ComponentCache, Error, ModuleCache};
use wasmtime::{Config, Engine};

const SECRET: &[u8] = b"a secret of at least thirty-two bytes, for tests";

/// A cache over a keyed memory tier, the backend, and the artifact stored for `ANSWER`.
fn primed(integrity: Integrity) -> (ModuleCache, Arc<MemoryBackend>, Engine, CacheKey, Bytes) {
    let memory = Arc::new(MemoryBackend::with_capacity(64 << 20).unwrap());
    let tiers = Tiered::builder()
        .tier(Tier::new(memory.clone()))
        .integrity(integrity)
        .build();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    let key = cache.key_for(&engine, &ContentHash::of(ANSWER.as_bytes()));
    let stored = block_on(memory.get(&key)).unwrap().unwrap();
    cache.clear_live();
    (cache, memory, engine, key, stored)
}

/// Replaces the stored entry with `bad`, asks again, and checks that the entry was refused before
/// `deserialize`, a working module came back, and a good entry replaced the bad one.
fn refused_before_deserialize(
    cache: &ModuleCache,
    memory: &MemoryBackend,
    engine: &Engine,
    key: &CacheKey,
    bad: Bytes,
) {
    block_on(memory.put(key, bad.clone())).unwrap();
    let before = cache.stats();
    let module = cache.get_or_compile(engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(call_answer(engine, &module), 42);
    let after = cache.stats();
    assert_eq!(
        after.decodes, before.decodes,
        "bad bytes reached deserialize"
    );
    assert_eq!(after.computes, before.computes + 1);
    assert_eq!(after.tier_hits, before.tier_hits);
    let replaced = block_on(memory.get(key)).unwrap().unwrap();
    assert_ne!(replaced, bad, "the bad entry was not overwritten");
    // The replacement loads.
    cache.clear_live();
    cache.get_or_compile(engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(cache.stats().tier_hits, after.tier_hits + 1);
    cache.clear_live();
}

#[test]
fn flipped_bits_are_refused_before_deserialize() {
    let (cache, memory, engine, key, stored) = primed(Integrity::plain());
    // A bit in the artifact, in the trailer's metadata, and in the tag.
    for at in [stored.len() / 2, stored.len() - 60, stored.len() - 1] {
        let mut bad = stored.to_vec();
        bad[at] ^= 0x10;
        let corrupt = cache.stats().corrupt();
        refused_before_deserialize(&cache, &memory, &engine, &key, Bytes::from(bad));
        assert_eq!(cache.stats().corrupt(), corrupt + 1, "flip at {at}");
    }
}

#[test]
fn truncated_entries_are_refused_before_deserialize() {
    let (cache, memory, engine, key, stored) = primed(Integrity::plain());
    for len in [0, 1, stored.len() / 2, stored.len() - 1] {
        let corrupt = cache.stats().corrupt();
        refused_before_deserialize(&cache, &memory, &engine, &key, stored.slice(..len));
        assert_eq!(cache.stats().corrupt(), corrupt + 1, "truncated to {len}");
    }
}

#[test]
fn entries_of_another_key_are_refused_before_deserialize() {
    let (cache, memory, engine, key, stored) = primed(Integrity::plain());
    // A valid artifact sealed for another key, stored under this one.
    let payload = &stored[..engine.precompile_module(ANSWER.as_bytes()).unwrap().len()];
    let other = CacheKey::pseudo_random(7);
    let moved = Integrity::plain().seal(&other, ArtifactKind::Module.envelope_kind(), "x", payload);
    refused_before_deserialize(&cache, &memory, &engine, &key, moved);
    assert_eq!(cache.stats().corrupt(), 1);
}

#[test]
fn forged_entries_are_refused_before_deserialize() {
    let (cache, memory, engine, key, _stored) = primed(Integrity::keyed(SECRET));
    // An attacker who can write to the tier but lacks the secret: a valid-looking artifact with
    // a plain tag, and one with a MAC under another secret. Both carry different code.
    let evil = engine
        .precompile_module(br#"(module (func (export "answer") (result i32) i32.const 666))"#)
        .unwrap();
    let kind = ArtifactKind::Module.envelope_kind();
    for forged in [
        Integrity::plain().seal(&key, kind, "x", &evil),
        Integrity::keyed(b"another secret, just as long as the first").seal(&key, kind, "x", &evil),
    ] {
        let before = cache.stats().forged();
        refused_before_deserialize(&cache, &memory, &engine, &key, forged);
        assert_eq!(cache.stats().forged(), before + 1);
    }
}

#[test]
fn verified_but_incompatible_entries_are_recompiled_and_overwritten() {
    let (cache, memory, engine, key, _stored) = primed(Integrity::plain());
    // A genuine artifact of an engine with other settings, correctly sealed under this key (as
    // a buggy writer or a wasmtime that changed its settings without changing its hash would).
    let mut config = Config::new();
    config.consume_fuel(true);
    let other = Engine::new(&config).unwrap();
    let foreign = other.precompile_module(ANSWER.as_bytes()).unwrap();
    let sealed = Integrity::plain().seal(&key, ArtifactKind::Module.envelope_kind(), "x", &foreign);
    block_on(memory.put(&key, sealed.clone())).unwrap();

    let module = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    let stats = cache.stats();
    assert_eq!(stats.decode_errors, 1);
    assert_eq!(stats.decodes, 1, "it verified, so wasmtime's own check ran");
    assert_eq!(stats.computes, 2);
    assert_eq!((stats.corrupt(), stats.forged()), (0, 0));
    assert_ne!(block_on(memory.get(&key)).unwrap().unwrap(), sealed);

    cache.clear_live();
    cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(cache.stats().tier_hits, 1);
}

fn stored_entries(memory: &MemoryBackend) -> u64 {
    block_on(memory.usage()).unwrap().entries
}

#[test]
fn invalid_wasm_is_a_clear_error_and_caches_nothing() {
    let (memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    for bad in [
        &b""[..],
        b"not wasm at all",
        b"\0asm\x01\0\0\0\x01\xff\xff",
        b"(module (func (result i32)))",
    ] {
        let err = cache.get_or_compile(&engine, bad).unwrap_err();
        assert!(matches!(err, Error::Compile { .. }), "{err}");
        assert!(err.to_string().contains("compiling module"), "{err}");
    }
    assert_eq!(stored_entries(&memory), 0);
    let stats = cache.stats();
    assert_eq!(
        (stats.computes, stats.compute_errors, stats.live_entries),
        (4, 4, 0)
    );
}

const COMPONENT: &str = r#"(component (core module (func (export "f"))))"#;

#[test]
fn a_component_where_a_module_is_expected_and_the_reverse() {
    let (memory, tiers) = memory_tiers();
    let modules = ModuleCache::new(tiers);
    let (component_memory, tiers) = memory_tiers();
    let components = ComponentCache::new(tiers);
    let engine = Engine::default();
    let component = wat::parse_str(COMPONENT).unwrap();
    let module = wat::parse_str(ANSWER).unwrap();

    let err = modules.get_or_compile(&engine, &component).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongKind {
                expected: ArtifactKind::Module,
                found: ArtifactKind::Component,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("is a component, but a module was expected"),
        "{err}"
    );
    let err = components.get_or_compile(&engine, &module).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongKind {
                found: ArtifactKind::Module,
                ..
            }
        ),
        "{err}"
    );
    // Text of the wrong kind is caught by wasmtime.
    let err = modules
        .get_or_compile(&engine, COMPONENT.as_bytes())
        .unwrap_err();
    assert!(matches!(err, Error::Compile { .. }), "{err}");
    assert_eq!(
        stored_entries(&memory) + stored_entries(&component_memory),
        0
    );

    // And the right kinds work, under separate namespaces.
    components.get_or_compile(&engine, &component).unwrap();
    components.clear_live();
    components.get_or_compile(&engine, &component).unwrap();
    assert_eq!(components.stats().tier_hits, 1);
    assert_ne!(
        modules.key_for(&engine, &ContentHash::of(&component)),
        components.key_for(&engine, &ContentHash::of(&component))
    );
}

#[test]
fn an_artifact_passed_as_wasm_is_refused() {
    let (memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    let artifact = engine.precompile_module(ANSWER.as_bytes()).unwrap();
    let err = cache.get_or_compile(&engine, &artifact).unwrap_err();
    assert!(matches!(err, Error::Precompiled { .. }), "{err}");
    assert_eq!(cache.stats().computes, 0);
    assert_eq!(stored_entries(&memory), 0);
}

#[test]
fn an_engine_without_a_compiler_is_a_clear_error() {
    let (memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let mut config = Config::new();
    config.enable_compiler(false);
    let engine = Engine::new(&config).unwrap();
    let err = cache
        .get_or_compile(&engine, ANSWER.as_bytes())
        .unwrap_err();
    assert!(matches!(err, Error::Compile { .. }), "{err}");
    assert!(err.to_string().contains("compil"), "{err}");
    assert_eq!(stored_entries(&memory), 0);
}

#[test]
fn a_wrong_supplied_hash_is_refused() {
    let (memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    let claimed = warmcache_wasmtime::ContentHash::of(b"some other module");
    let err = cache
        .get_or_compile(
            &engine,
            Wasm::hashed(claimed, || {
                Ok::<_, std::io::Error>(ANSWER.as_bytes().to_vec())
            }),
        )
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
    let err = cache
        .get_or_compile(
            &engine,
            Wasm::hashed(claimed, || {
                Err::<Vec<u8>, _>(std::io::Error::other("code store is down"))
            }),
        )
        .unwrap_err();
    assert!(err.to_string().contains("code store is down"), "{err}");
    assert_eq!(stored_entries(&memory), 0);
}
