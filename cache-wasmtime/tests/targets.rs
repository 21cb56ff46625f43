//! Explicit compile targets: a build host compiles for another target or a CPU baseline, and
//! nodes configured the same way (with or without a compiler) derive the same keys.

#![allow(clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use crate::common;
use warmcache_wasmtime::ContentHash;

use common::{ANSWER, call_answer, memory_tiers};
use warmcache_wasmtime::{CompileTarget, ModuleCache};
use wasmtime::{Config, Engine};

#[test]
fn an_aarch64_precompile_has_the_key_an_aarch64_node_derives_and_is_never_loaded_here() {
    let (_memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let base = Config::new();
    let aarch64 = CompileTarget::new("aarch64-unknown-linux-gnu").unwrap();
    let builder = Engine::new(&aarch64.compiling_config(&base).unwrap()).unwrap();
    cache.pin_engine_key(&builder, aarch64.engine_key(&base).unwrap());
    let done = cache.precompile(&builder, ANSWER.as_bytes()).unwrap();
    assert!(!done.already_cached);

    // An aarch64 node without a compiler, configured the same way: same key.
    let node_config = aarch64.loading_config(&base).unwrap();
    let node_key = aarch64.engine_key(&node_config).unwrap();
    assert_eq!(node_key, aarch64.engine_key(&base).unwrap());
    let node = ModuleCache::new(memory_tiers().1);
    let node_engine = Engine::new(&node_config).unwrap();
    node.pin_engine_key(&node_engine, node_key);
    assert_eq!(
        node.key_for(&node_engine, &ContentHash::of(ANSWER.as_bytes())),
        done.key
    );

    // This host's own engine derives another key: it compiles, and never loads the entry.
    let host = Engine::default();
    assert_ne!(
        cache.key_for(&host, &ContentHash::of(ANSWER.as_bytes())),
        done.key
    );
    let before = cache.stats();
    let module = cache.get_or_compile(&host, ANSWER.as_bytes()).unwrap();
    assert_eq!(call_answer(&host, &module), 42);
    let after = cache.stats();
    assert_eq!(after.computes - before.computes, 1);
    assert_eq!(after.decodes, before.decodes);
    assert_eq!(after.decode_errors, 0);
}

#[test]
fn a_node_without_a_compiler_loads_what_a_compiling_engine_of_its_configuration_stored() {
    let (memory, tiers) = memory_tiers();
    let builder_cache = ModuleCache::new(tiers);
    let base = Config::new();
    // The host's triple at its baseline CPU, as a fleet of mixed hosts of this architecture
    // would share.
    let target = CompileTarget::new(&CompileTarget::host_triple()).unwrap();
    let compiling = Engine::new(&target.compiling_config(&base).unwrap()).unwrap();
    builder_cache.pin_engine_key(&compiling, target.engine_key(&base).unwrap());
    builder_cache
        .precompile(&compiling, ANSWER.as_bytes())
        .unwrap();

    let node_tiers = warmcache_core::Tiered::builder()
        .tier(warmcache_core::Tier::new(memory))
        .build();
    let node = ModuleCache::new(node_tiers);
    let loading_config = target.loading_config(&base).unwrap();
    let loading = Engine::new(&loading_config).unwrap();
    node.pin_engine_key(&loading, target.engine_key(&loading_config).unwrap());
    let module = node.get_or_compile(&loading, ANSWER.as_bytes()).unwrap();
    assert_eq!(call_answer(&loading, &module), 42);
    let stats = node.stats();
    assert_eq!((stats.computes, stats.tier_hits), (0, 1), "{stats:?}");

    // Without pinning, the compiler-less engine's own key differs from the compiling one's:
    // the reason the explicit key exists.
    let unpinned = ModuleCache::new(memory_tiers().1);
    assert_ne!(
        unpinned.key_for(&loading, &ContentHash::of(ANSWER.as_bytes())),
        builder_cache.key_for(&compiling, &ContentHash::of(ANSWER.as_bytes()))
    );
}

#[test]
fn settings_and_triples_are_part_of_the_explicit_key() {
    let base = Config::new();
    let host = CompileTarget::new(&CompileTarget::host_triple()).unwrap();
    let plain = host.engine_key(&base).unwrap();
    let none = unsafe { host.clone().setting("opt_level", "none") };
    assert_ne!(none.engine_key(&base).unwrap(), plain);
    let other = CompileTarget::new("riscv64gc-unknown-linux-gnu").unwrap();
    assert_ne!(other.engine_key(&base).unwrap(), plain);
    assert!(CompileTarget::new("no-such-target-triple-at-all").is_err());
    let bogus = unsafe { host.setting("no_such_cranelift_setting", "true") };
    let err = bogus.compiling_config(&base).unwrap_err().to_string();
    assert!(err.contains("no_such_cranelift_setting"), "{err}");
}
