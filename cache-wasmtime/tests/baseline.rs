//! Baseline code first: a cold miss is answered with Winch code of the baseline engine, the
//! optimized artifact is compiled behind it at lower priority (in a real worker process held at
//! a gate, so "during the upgrade" is a state the test controls, not a race), and once it is
//! stored every request uses it and the baseline entry is gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use common::{ANSWER, call_answer, memory_tiers};
use warmcache_core::{Backend, BackendExt, Tiered};
use warmcache_memory::MemoryBackend;
use warmcache_wasmtime::{Baseline, ContentHash, Error, Isolation, ModuleCache, NamedLinker};
use wasmtime::{Config, Engine, Module};

/// A module with a tail call: a proposal Winch does not implement.
const TAIL_CALL: &str = r#"(module
  (func $f (result i32) i32.const 42)
  (func (export "answer") (result i32) return_call $f))"#;

fn baseline_cache(
    tiers: Tiered,
    isolation: Option<Isolation>,
) -> (ModuleCache, Engine, Arc<Baseline>) {
    let config = Config::new();
    let engine = Engine::new(&config).unwrap();
    let baseline = Arc::new(Baseline::new(&config).unwrap());
    let builder = ModuleCache::builder().tiers(tiers);
    let cache = match isolation {
        Some(isolation) => builder.isolate(isolation),
        None => builder,
    }
    .build();
    cache.use_baseline(&engine, Arc::clone(&baseline));
    (cache, engine, baseline)
}

fn is_baseline(module: &Module, baseline: &Baseline) -> bool {
    Engine::same(module.engine(), baseline.engine())
}

fn stored(memory: &MemoryBackend, key: &warmcache_core::CacheKey) -> bool {
    futures::executor::block_on(memory.get(key))
        .unwrap()
        .is_some()
}

/// The nice value of process `pid` (field 19 of its stat line).
fn nice_of(stat: &str) -> i64 {
    let rest = stat.rsplit(')').next().unwrap();
    rest.split_whitespace().nth(16).unwrap().parse().unwrap()
}

#[test]
fn a_cold_miss_serves_baseline_code_and_the_optimized_artifact_replaces_it() {
    let (memory, tiers) = memory_tiers();
    let (cache, engine, baseline) = baseline_cache(tiers, None);
    let content = ContentHash::of(ANSWER.as_bytes());
    let first = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert!(is_baseline(&first, &baseline));
    assert_eq!(call_answer(baseline.engine(), &first), 42);

    cache.flush();
    let stats = baseline.stats();
    assert_eq!(
        (stats.served, stats.upgrades, stats.upgrade_failures),
        (1, 1, 0)
    );
    assert!(!baseline.upgrading());
    // One Winch compile, one Cranelift compile.
    assert_eq!(cache.stats().computes, 2);
    let next = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert!(Engine::same(next.engine(), &engine));
    assert_eq!(call_answer(&engine, &next), 42);
    // The optimized entry is stored and the baseline one removed.
    assert!(stored(&memory, &cache.key_for(&engine, &content)));
    assert!(!stored(
        &memory,
        &cache.key_for(baseline.engine(), &content)
    ));

    // Another process on the same tier loads the optimized artifact, compiling nothing.
    let tiers = Tiered::builder()
        .tier(warmcache_core::Tier::new(memory.clone()))
        .build();
    let (other, other_engine, other_baseline) = baseline_cache(tiers, None);
    let module = other
        .get_or_compile(&other_engine, ANSWER.as_bytes())
        .unwrap();
    assert!(Engine::same(module.engine(), &other_engine));
    assert_eq!(other.stats().computes, 0);
    assert_eq!(other_baseline.stats().served, 0);
}

/// A worker in `sh` that appends each kind it is asked for to `dir/kinds` and answers with
/// `ANSWER` compiled beforehand: by Winch at once for baseline code (a worker of this
/// test's own engines), by Cranelift after running `optimized` (a script that may wait).
fn scripted_worker(dir: &std::path::Path, optimized: &str) -> Isolation {
    let config = Config::new();
    let (winch, cranelift) = (dir.join("winch"), dir.join("cranelift"));
    let baseline = Baseline::new(&config).unwrap();
    let compile = |engine: &Engine| engine.precompile_module(ANSWER.as_bytes()).unwrap();
    std::fs::write(&winch, compile(baseline.engine())).unwrap();
    std::fs::write(&cranelift, compile(&Engine::new(&config).unwrap())).unwrap();
    let script = format!(
        "cat > /dev/null; echo \"$1\" >> {kinds}; case \"$1\" in \
         baseline-module) cat {winch} ;; \
         module) {optimized}; cat {cranelift} ;; \
         *) exit 3 ;; esac",
        kinds = dir.join("kinds").display(),
        winch = winch.display(),
        cranelift = cranelift.display(),
    );
    Isolation::new("sh").args(["-c", &script, "worker"])
}

/// The kinds a [`scripted_worker`] in `dir` was asked for, in order.
fn kinds_asked(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("kinds"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The optimized compile runs in a worker that waits at a gate, records its nice value, then
/// returns an artifact compiled beforehand with the same engine.
#[test]
fn requests_during_the_upgrade_get_the_baseline_code_and_the_compile_runs_at_lower_priority() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, nice) = (dir.path().join("gate"), dir.path().join("nice"));
    let wait = format!(
        "cat /proc/$$/stat > {nice}; while [ ! -e {gate} ]; do sleep 0.01; done",
        nice = nice.display(),
        gate = gate.display(),
    );
    let worker = scripted_worker(dir.path(), &wait);
    let (memory, tiers) = memory_tiers();
    let (cache, engine, baseline) = baseline_cache(tiers, Some(worker));

    let first = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert!(is_baseline(&first, &baseline));
    assert!(baseline.upgrading());
    let before = cache.stats();
    for _ in 0..3 {
        let again = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
        assert!(is_baseline(&again, &baseline));
    }
    let after = cache.stats();
    // Served from the baseline code in memory: no storage read, no compile.
    assert_eq!(after.misses, before.misses);
    assert_eq!(
        after.tiers[0].hits + after.tiers[0].misses,
        before.tiers[0].hits + before.tiers[0].misses
    );
    assert_eq!(after.computes, before.computes);
    assert_eq!(baseline.stats().served, 4);

    std::fs::write(&gate, b"").unwrap();
    cache.flush();
    assert_eq!(baseline.stats().upgrades, 1);
    let next = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert!(Engine::same(next.engine(), &engine));
    let content = ContentHash::of(ANSWER.as_bytes());
    assert!(!stored(
        &memory,
        &cache.key_for(baseline.engine(), &content)
    ));

    let ours = nice_of(&std::fs::read_to_string("/proc/self/stat").unwrap());
    let workers = nice_of(&std::fs::read_to_string(&nice).unwrap());
    assert!(
        workers > ours || ours == 19,
        "the optimized compile ran at nice {workers}, this process at {ours}"
    );
}

/// Winch's compile of a cold miss is as much the input's to abuse as Cranelift's: with
/// isolated compiles, both run in the worker, baseline first.
#[test]
fn with_isolated_compiles_the_winch_compile_runs_in_the_worker_too() {
    let dir = tempfile::tempdir().unwrap();
    let (_memory, tiers) = memory_tiers();
    let (cache, engine, baseline) = baseline_cache(tiers, Some(scripted_worker(dir.path(), ":")));
    let first = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert!(is_baseline(&first, &baseline));
    assert_eq!(call_answer(baseline.engine(), &first), 42);
    cache.flush();
    assert_eq!(kinds_asked(dir.path()), ["baseline-module", "module"]);
    let stats = baseline.stats();
    assert_eq!((stats.served, stats.upgrades), (1, 1));
}

/// An optimized compile that fails leaves the baseline code in use and is not tried again on
/// the next requests: a module Winch compiles and Cranelift cannot costs one optimized compile,
/// not one per request.
#[test]
fn a_failed_upgrade_is_not_retried_by_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let worker = scripted_worker(dir.path(), "echo 'error: no' >&2; exit 3");
    let (_memory, tiers) = memory_tiers();
    let (cache, engine, baseline) = baseline_cache(tiers, Some(worker));
    for _ in 0..3 {
        let module = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
        assert!(is_baseline(&module, &baseline));
        cache.flush();
    }
    assert_eq!(kinds_asked(dir.path()), ["baseline-module", "module"]);
    let stats = baseline.stats();
    assert_eq!(
        (stats.served, stats.upgrades, stats.upgrade_failures),
        (3, 0, 1)
    );
}

/// A module that keeps the one-pass compile over the worker's limit is the request's error, at
/// once: no second compile with Cranelift, no baseline code, nothing stored.
#[test]
fn a_winch_compile_over_the_worker_limit_fails_the_request_without_a_cranelift_compile() {
    let dir = tempfile::tempdir().unwrap();
    let kinds = dir.path().join("kinds");
    let script = format!(
        "echo \"$1\" >> {kinds}; case \"$1\" in baseline-*) sleep 120 ;; esac; exit 3",
        kinds = kinds.display()
    );
    let worker = Isolation::new("sh")
        .args(["-c", &script, "worker"])
        .timeout(std::time::Duration::from_millis(300));
    let (memory, tiers) = memory_tiers();
    let (cache, engine, baseline) = baseline_cache(tiers, Some(worker));
    let err = cache
        .get_or_compile(&engine, ANSWER.as_bytes())
        .unwrap_err();
    assert!(matches!(err, Error::OverLimit { .. }), "{err}");
    cache.flush();
    assert_eq!(kinds_asked(dir.path()), ["baseline-module"]);
    let stats = baseline.stats();
    assert_eq!((stats.served, stats.unsupported, stats.upgrades), (0, 0, 0));
    assert_eq!(
        futures::executor::block_on(memory.list_all())
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn a_module_winch_cannot_compile_goes_straight_to_cranelift() {
    let (_memory, tiers) = memory_tiers();
    let (cache, engine, baseline) = baseline_cache(tiers, None);
    let module = cache.get_or_compile(&engine, TAIL_CALL.as_bytes()).unwrap();
    assert!(Engine::same(module.engine(), &engine));
    assert_eq!(call_answer(&engine, &module), 42);
    cache.flush();
    let stats = baseline.stats();
    assert_eq!((stats.unsupported, stats.served, stats.upgrades), (1, 0, 0));
    // The next request is an in-process hit of the optimized artifact.
    cache.get_or_compile(&engine, TAIL_CALL.as_bytes()).unwrap();
    assert_eq!(cache.stats().live_hits, 1);
}

#[test]
fn invalid_wasm_is_the_compile_error_it_always_was_and_nothing_is_stored() {
    let (memory, tiers) = memory_tiers();
    let (cache, engine, _baseline) = baseline_cache(tiers, None);
    let err = cache
        .get_or_compile(&engine, b"(module (func (result i32)))".as_slice())
        .unwrap_err();
    assert!(matches!(err, Error::Compile { .. }), "{err}");
    cache.flush();
    assert_eq!(
        futures::executor::block_on(memory.list_all())
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn an_embedder_checks_which_engine_its_store_needs() {
    // The store must come from the artifact's engine: wasmtime refuses another, not silently.
    let (_memory, tiers) = memory_tiers();
    let (cache, engine, _baseline) = baseline_cache(tiers, None);
    let module = cache.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    assert!(wasmtime::Instance::new(&mut store, &module, &[]).is_err());
}

/// A [`scripted_worker`] whose optimized compile waits until `gate` exists.
fn gated_worker(dir: &std::path::Path) -> (Isolation, std::path::PathBuf) {
    let gate = dir.join("gate");
    let wait = format!("while [ ! -e {} ]; do sleep 0.01; done", gate.display());
    (scripted_worker(dir, &wait), gate)
}

#[test]
fn the_instance_cache_serves_baseline_code_through_a_linker_with_a_baseline_twin() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, gate) = gated_worker(dir.path());
    let (_memory, tiers) = memory_tiers();
    let (cache, engine, baseline) = baseline_cache(tiers, Some(worker));
    let instances = warmcache_wasmtime::ModuleInstances::<()>::new(cache);
    let linker = NamedLinker::new(wasmtime::Linker::new(&engine), "none", 1)
        .with_baseline(wasmtime::Linker::new(baseline.engine()));
    let answer = |pre: &wasmtime::InstancePre<()>| {
        let mut store = wasmtime::Store::new(pre.module().engine(), ());
        let instance = pre.instantiate(&mut store).unwrap();
        let f = instance
            .get_typed_func::<(), i32>(&mut store, "answer")
            .unwrap();
        f.call(&mut store, ()).unwrap()
    };

    // While the optimized compile is held, each request gets baseline code, built afresh.
    for _ in 0..2 {
        let pre = instances.instance_pre(&linker, ANSWER.as_bytes()).unwrap();
        assert!(Engine::same(pre.module().engine(), baseline.engine()));
        assert_eq!(answer(&pre), 42);
    }
    assert_eq!(baseline.stats().served, 2);

    std::fs::write(&gate, b"").unwrap();
    instances.artifacts().flush();
    // Then the optimized artifact, kept: the second request is a kept one.
    for _ in 0..2 {
        let pre = instances.instance_pre(&linker, ANSWER.as_bytes()).unwrap();
        assert!(Engine::same(pre.module().engine(), &engine));
        assert_eq!(answer(&pre), 42);
    }
    assert_eq!(instances.stats().live_hits, 1);
}

#[test]
fn the_instance_cache_without_a_baseline_twin_or_with_the_callers_store_uses_optimized_code() {
    let (_memory, tiers) = memory_tiers();
    let (cache, engine, baseline) = baseline_cache(tiers, None);
    let instances = warmcache_wasmtime::ModuleInstances::<()>::new(cache);
    // A store of the caller's engine: baseline code could not be instantiated in it.
    let twin = NamedLinker::new(wasmtime::Linker::new(&engine), "none", 1)
        .with_baseline(wasmtime::Linker::new(baseline.engine()));
    let mut store = wasmtime::Store::new(&engine, ());
    instances
        .instantiate(&mut store, &twin, ANSWER.as_bytes())
        .unwrap();
    // A linker of the caller's engine only.
    let plain = NamedLinker::new(wasmtime::Linker::new(&engine), "plain", 1);
    let pre = instances
        .instance_pre(&plain, common::SIMD.as_bytes())
        .unwrap();
    assert!(Engine::same(pre.module().engine(), &engine));
    assert_eq!(baseline.stats().served, 0);
}
