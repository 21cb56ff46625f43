//! Misses explained: entries record their key's inputs, and `explain` names the fields in
//! which another configuration of the same wasm differs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{ANSWER, SIMD, memory_tiers};
use warmcache_wasmtime::ModuleCache;
use wasmtime::{Config, Engine, OptLevel};

fn engine(opt: OptLevel, simd: bool) -> Engine {
    let mut config = Config::new();
    config
        .cranelift_opt_level(opt)
        .wasm_simd(simd)
        .wasm_relaxed_simd(simd);
    Engine::new(&config).unwrap()
}

#[test]
fn another_configuration_is_explained_by_the_field_that_differs() {
    let cache = ModuleCache::new(memory_tiers().1);
    let speed = engine(OptLevel::Speed, true);
    cache.describe_engine(&speed, [("opt_level", "speed")]);
    cache.get_or_compile(&speed, SIMD.as_bytes()).unwrap();
    cache.flush();

    let none = engine(OptLevel::None, true);
    cache.describe_engine(&none, [("opt_level", "none")]);
    let why = cache.explain(&none, SIMD.as_bytes()).unwrap();
    assert_eq!(why.entries.len(), 1, "{why:?}");
    let differences: Vec<String> = why.entries[0]
        .differences
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(differences, ["opt_level: none here, speed in the entry"]);
    assert!(
        why.summary().contains(
            "1 other configuration of this module is cached; in the 0:memory tier: opt_level"
        ),
        "{}",
        why.summary()
    );
    let field = |name: &str| {
        why.inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("opt_level").as_deref(), Some("none"));
    assert_eq!(field("kind").as_deref(), Some("module"));
    assert_eq!(field("cpu").as_deref(), Some("native"));

    // The configuration that stored it finds its own entry, with nothing different.
    let own = cache.explain(&speed, SIMD.as_bytes()).unwrap();
    assert_eq!(own.key, why.entries[0].key);
    assert!(own.entries[0].differences.is_empty());
}

#[test]
fn settings_nobody_described_differ_in_the_engine_digest() {
    let cache = ModuleCache::new(memory_tiers().1);
    cache
        .get_or_compile(&engine(OptLevel::Speed, true), ANSWER.as_bytes())
        .unwrap();
    cache.flush();
    let why = cache
        .explain(&engine(OptLevel::Speed, false), ANSWER.as_bytes())
        .unwrap();
    assert_eq!(why.entries[0].differences.len(), 1);
    assert_eq!(why.entries[0].differences[0].field, "engine");
}

#[test]
fn a_module_never_cached_says_so() {
    let cache = ModuleCache::new(memory_tiers().1);
    let speed = engine(OptLevel::Speed, true);
    cache.get_or_compile(&speed, ANSWER.as_bytes()).unwrap();
    cache.flush();
    let why = cache.explain(&speed, SIMD.as_bytes()).unwrap();
    assert!(why.entries.is_empty());
    assert_eq!(
        why.summary(),
        "no other configuration of this module is cached in any tier"
    );
}

/// `wanted` tells, from an entry's key and recorded inputs, whether this engine looks it up:
/// what `warmcache prefetch` copies to a new host.
#[test]
fn an_entry_is_wanted_by_the_engine_that_looks_it_up_only() {
    let (memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let speed = engine(OptLevel::Speed, true);
    cache.get_or_compile(&speed, ANSWER.as_bytes()).unwrap();
    cache.flush();
    let content = warmcache_wasmtime::ContentHash::of(ANSWER.as_bytes());
    let key = cache.key_for(&speed, &content);
    let stored = futures::executor::block_on(warmcache_core::Backend::get(&memory, &key))
        .unwrap()
        .unwrap();
    let inputs = warmcache_core::inspect(&stored).unwrap().inputs;

    assert_eq!(cache.wanted(&speed, &key, &inputs), Some(content));
    // Another engine, another key; the other kind; inputs that are not an entry's.
    assert_eq!(
        cache.wanted(&engine(OptLevel::None, true), &key, &inputs),
        None
    );
    let components = warmcache_wasmtime::ComponentCache::new(memory_tiers().1);
    assert_eq!(components.wanted(&speed, &key, &inputs), None);
    assert_eq!(cache.wanted(&speed, &key, ""), None);
    assert_eq!(
        cache.wanted(&speed, &key, "kind=module\ncontent=zz\n"),
        None
    );
    // Inputs copied onto another key (a forged entry's claim) are not that key's.
    let other = cache.key_for(&speed, &warmcache_wasmtime::ContentHash::of(b"(module)"));
    assert_eq!(cache.wanted(&speed, &other, &inputs), None);
}
