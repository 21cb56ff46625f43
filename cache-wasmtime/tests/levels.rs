//! CPU levels: entries precompiled for named levels are found by nodes whose CPU has them,
//! best level first, never a level above the node's ceiling; a full miss compiles for the best.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::common;

use std::sync::Arc;

use common::{SIMD, call_answer};
use warmcache_core::{Backend, Integrity, Tier, Tiered};
use warmcache_memory::MemoryBackend;
use warmcache_wasmtime::{Answer, ContentHash, CpuLevel, CpuLevels, ModuleCache, TargetError};
use wasmtime::{Config, Engine};

fn level(name: &str) -> CpuLevel {
    CpuLevel::named(name).unwrap()
}

/// The answer of the level `name`.
fn at(name: &str) -> Option<Answer> {
    Some(Answer::Level(level(name)))
}

fn cache_on(memory: &Arc<MemoryBackend>) -> ModuleCache {
    ModuleCache::new(Tiered::builder().tier(Tier::new(memory.clone())).build())
}

/// Precompiles SIMD for `level` into `memory`, as a CI host would.
fn precompile_for(memory: &Arc<MemoryBackend>, level: CpuLevel) {
    let base = Config::new();
    let target = level.target();
    let engine = Engine::new(&target.compiling_config(&base).unwrap()).unwrap();
    let cache = cache_on(memory);
    cache.pin_engine_key(&engine, target.engine_key(&base).unwrap());
    assert!(
        !cache
            .precompile(&engine, SIMD.as_bytes())
            .unwrap()
            .already_cached
    );
}

/// A node of this host whose CPU is claimed to reach `ceiling`: what it loaded, and how many
/// compiles that took.
fn node(memory: &Arc<MemoryBackend>, ceiling: CpuLevel) -> (Option<Answer>, u64) {
    node_with(
        memory,
        CpuLevels::new(&Config::new(), ceiling, CpuLevel::target).unwrap(),
    )
}

/// A node of this host looking up `levels`: what it loaded, and how many compiles that took.
fn node_with(memory: &Arc<MemoryBackend>, levels: CpuLevels) -> (Option<Answer>, u64) {
    let base = Config::new();
    let engine = Engine::new(&base).unwrap();
    let cache = cache_on(memory);
    let levels = Arc::new(levels);
    cache.use_cpu_levels(&engine, Arc::clone(&levels));
    let module = cache.get_or_compile(&engine, SIMD.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    (levels.last_used(), cache.stats().computes)
}

/// The x86-64 levels this host runs, or `None` (with a message) on another host.
fn x86_levels() -> Option<Vec<CpuLevel>> {
    let levels: Vec<CpuLevel> = CpuLevel::supported_here()
        .into_iter()
        .filter(|l| l.arch() == "x86_64")
        .collect();
    if levels.len() < 3 {
        eprintln!("skipped: this host runs fewer than three x86-64 levels ({levels:?})");
        return None;
    }
    Some(levels)
}

#[test]
fn each_node_loads_the_best_level_present_at_or_below_its_ceiling() {
    let Some(supported) = x86_levels() else {
        return;
    };
    let memory = Arc::new(MemoryBackend::with_capacity(64 << 20).unwrap());
    for name in ["x86-64-v2", "x86-64-v3"] {
        precompile_for(&memory, level(name));
    }
    // A ceiling of v3 loads v3; v2 loads v2 although v3 is there, above it.
    assert_eq!(node(&memory, level("x86-64-v3")), (at("x86-64-v3"), 0));
    assert_eq!(node(&memory, level("x86-64-v2")), (at("x86-64-v2"), 0));
    // The best this host has, if it is v4, is missing: it takes v3.
    if supported[0] == level("x86-64-v4") {
        assert_eq!(node(&memory, level("x86-64-v4")), (at("x86-64-v3"), 0));
    }
    // Nothing at or below v1: it compiles for v1, and the next v1 node finds that.
    assert_eq!(node(&memory, level("x86-64-v1")), (at("x86-64-v1"), 1));
    assert_eq!(node(&memory, level("x86-64-v1")), (at("x86-64-v1"), 0));
}

#[test]
fn a_full_miss_compiles_for_the_best_level_for_the_next_host_of_that_level() {
    let Some(supported) = x86_levels() else {
        return;
    };
    let memory = Arc::new(MemoryBackend::with_capacity(64 << 20).unwrap());
    let best = supported[0];
    assert_eq!(node(&memory, best), (Some(Answer::Level(best)), 1));
    // The entry is the best level's: a CI host precompiling that level finds it there.
    let base = Config::new();
    let target = best.target();
    let engine = Engine::new(&target.compiling_config(&base).unwrap()).unwrap();
    let cache = cache_on(&memory);
    cache.pin_engine_key(&engine, target.engine_key(&base).unwrap());
    assert!(
        cache
            .precompile(&engine, SIMD.as_bytes())
            .unwrap()
            .already_cached
    );
}

#[test]
fn a_level_this_cpu_cannot_run_is_refused_naming_what_it_lacks() {
    let foreign = if cfg!(target_arch = "aarch64") {
        level("x86-64-v2")
    } else {
        level("aarch64-lse")
    };
    let err = CpuLevels::new(&Config::new(), foreign, CpuLevel::target).unwrap_err();
    assert!(matches!(err, TargetError::Level { .. }), "{err}");
    assert!(err.to_string().contains("architecture"), "{err}");
    // A level of this architecture with a feature this CPU lacks, if there is one.
    if let Some(above) = CpuLevel::ALL
        .into_iter()
        .find(|l| l.arch() == std::env::consts::ARCH && !l.runs_here())
    {
        let err = CpuLevels::new(&Config::new(), above, CpuLevel::target).unwrap_err();
        assert!(err.to_string().contains(above.missing_here()[0]), "{err}");
    }
}

#[test]
fn levels_are_ordered_and_named() {
    for pair in CpuLevel::ALL.windows(2) {
        if pair[0].arch() == pair[1].arch() {
            assert!(pair[0] < pair[1]);
            assert!(pair[1].features().len() > pair[0].features().len());
        }
    }
    assert_eq!(CpuLevel::named("x86-64-v9"), None);
    assert_eq!(level("x86-64-v4").to_string(), "x86-64-v4");
}

/// A cache with levels precompiles for its best level, the code as a CI host compiling for that
/// level makes it (wasmtime's output is deterministic), and invalidates every level.
#[test]
fn precompiling_with_levels_stores_the_best_levels_code_and_invalidating_clears_every_level() {
    let Some(supported) = x86_levels() else {
        return;
    };
    let best = supported[0];
    let memory = Arc::new(MemoryBackend::with_capacity(64 << 20).unwrap());
    precompile_for(&memory, level("x86-64-v2"));
    let base = Config::new();
    let engine = Engine::new(&base).unwrap();
    let cache = cache_on(&memory);
    cache.use_cpu_levels(
        &engine,
        Arc::new(CpuLevels::new(&base, best, CpuLevel::target).unwrap()),
    );
    let done = cache.precompile(&engine, SIMD.as_bytes()).unwrap();
    assert!(!done.already_cached);
    let stored = futures::executor::block_on(memory.get(&done.key))
        .unwrap()
        .unwrap();
    let stored = Integrity::plain().open(&done.key, &stored).unwrap();
    let target = best.target();
    let ci = Engine::new(&target.compiling_config(&base).unwrap()).unwrap();
    let expected = ci.precompile_module(SIMD.as_bytes()).unwrap();
    // Compared whole, reported by length: a failure names the level, not a megabyte of bytes.
    assert!(
        stored.payload() == &expected[..],
        "the stored artifact is not the {best} compiler's ({} bytes against {})",
        stored.payload().len(),
        expected.len()
    );
    assert_eq!(
        done.key,
        cache.key_for(&engine, &ContentHash::of(SIMD.as_bytes()))
    );

    cache.invalidate(&engine, SIMD.as_bytes()).unwrap();
    assert_eq!(node(&memory, best), (Some(Answer::Level(best)), 1));
}

/// With `native_first`, a node's own entry (as a node without levels stores it) wins over every
/// level; without it the node never looks at it; a full miss still compiles for the best level.
#[test]
fn native_first_loads_this_hosts_own_entry_before_any_level() {
    let Some(supported) = x86_levels() else {
        return;
    };
    let best = supported[0];
    let native_first = || {
        CpuLevels::new(&Config::new(), best, CpuLevel::target)
            .unwrap()
            .native_first()
    };
    let memory = Arc::new(MemoryBackend::with_capacity(64 << 20).unwrap());
    // Nothing native yet: the best level is compiled, as without native_first.
    assert_eq!(
        node_with(&memory, native_first()),
        (Some(Answer::Level(best)), 1)
    );

    // A node without levels stores this host's own code.
    let engine = Engine::new(&Config::new()).unwrap();
    let plain = cache_on(&memory);
    plain.get_or_compile(&engine, SIMD.as_bytes()).unwrap();
    assert_eq!(plain.stats().computes, 1);

    assert_eq!(
        node_with(&memory, native_first()),
        (Some(Answer::Native), 0)
    );
    assert_eq!(node(&memory, best), (Some(Answer::Level(best)), 0));

    // The counts name the native entry first; invalidating clears it with the levels.
    let levels = Arc::new(native_first());
    let cache = cache_on(&memory);
    cache.use_cpu_levels(&engine, Arc::clone(&levels));
    cache.get_or_compile(&engine, SIMD.as_bytes()).unwrap();
    assert_eq!(levels.used()[0], (Answer::Native, 1));
    assert_eq!(levels.used().len(), levels.levels().count() + 1);
    cache.invalidate(&engine, SIMD.as_bytes()).unwrap();
    assert_eq!(
        node_with(&memory, native_first()),
        (Some(Answer::Level(best)), 1)
    );
    assert_eq!(Answer::Native.to_string(), "native");
}
