//! Compiles in a worker process (`Isolation`), with workers written in `sh` so that each way a
//! worker can end is produced for real: it hangs (and leaves a child of its own holding the
//! pipes), fails with a message, dies of a signal, returns garbage, or returns a real artifact
//! (one this test compiled beforehand with the same engine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ANSWER, call_answer, memory_tiers};
use warmcache_core::{Tier, Tiered};
use warmcache_wasmtime::{Error, Isolation, Limit, ModuleCache};
use wasmtime::Engine;

/// A worker running `script` in `sh` (the kind arrives as `$1`).
fn worker(script: &str) -> Isolation {
    Isolation::new("sh").args(["-c", script, "worker"])
}

fn cache_with(isolation: Isolation) -> ModuleCache {
    ModuleCache::builder()
        .tiers(memory_tiers().1)
        .isolate(isolation)
        .build()
}

/// Whether process `pid` is gone (or a zombie waiting for its new parent to reap it).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_hanging_worker_and_what_it_started_are_stopped_at_the_wall_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild");
    // The worker starts a child that keeps its standard output open, then waits for it.
    let script = format!("sleep 120 & echo $! > {}; wait", pid_file.display());
    let cache = cache_with(worker(&script).timeout(Duration::from_millis(300)));
    let started = Instant::now();
    let err = cache.get_or_compile(&Engine::default(), ANSWER.as_bytes());
    let took = started.elapsed();
    match err {
        Err(Error::OverLimit {
            limit: Limit::WallTime(limit),
            ..
        }) => assert_eq!(limit, Duration::from_millis(300)),
        other => panic!("expected the wall-time limit, got {other:?}"),
    }
    // The child held the pipes for two minutes: returning before then means it was stopped.
    assert!(
        took < Duration::from_secs(60),
        "the call returned after {took:?}: it waited for the worker's child"
    );
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(grandchild) {
        assert!(
            Instant::now() < deadline,
            "the worker's child {grandchild} is still running"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_worker_that_finishes_but_leaves_a_child_holding_its_output_is_not_waited_for() {
    let cache = cache_with(
        worker("sleep 120 & echo 'error: no artifact today' >&2; exit 1")
            .timeout(Duration::from_secs(60)),
    );
    let started = Instant::now();
    let err = cache
        .get_or_compile(&Engine::default(), ANSWER.as_bytes())
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the call waited {:?} for the worker's child",
        started.elapsed()
    );
    assert!(
        matches!(&err, Error::Compile { .. }) && err.to_string().contains("no artifact today"),
        "{err:?}"
    );
}

#[test]
fn a_worker_killed_by_a_signal_is_a_worker_error_and_nothing_is_stored() {
    let cache = cache_with(worker("kill -SEGV $$"));
    let engine = Engine::default();
    let err = cache
        .get_or_compile(&engine, ANSWER.as_bytes())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Worker { message, .. } if message.contains("signal")),
        "{err:?}"
    );
    assert_eq!(cache.stats().tiers[0].writes, 0);
}

#[test]
fn garbage_from_a_worker_is_refused_and_nothing_is_stored() {
    let cache = cache_with(worker("echo 'not an artifact'"));
    let err = cache
        .get_or_compile(&Engine::default(), ANSWER.as_bytes())
        .unwrap_err();
    assert!(matches!(&err, Error::Load { .. }), "{err:?}");
    assert_eq!(cache.stats().tiers[0].writes, 0);
}

/// The worker hands back an artifact the test compiled with the same engine: the parent loads
/// it, runs it and stores it, so a second cache over the same tiers compiles nothing.
#[test]
fn a_workers_artifact_is_loaded_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::default();
    let artifact = dir.path().join("answer.cwasm");
    std::fs::write(
        &artifact,
        engine.precompile_module(ANSWER.as_bytes()).unwrap(),
    )
    .unwrap();
    let kind_file = dir.path().join("kind");
    let script = format!(
        "echo \"$1\" > {}; cat > /dev/null; cat {}",
        kind_file.display(),
        artifact.display()
    );
    let (memory, tiers) = memory_tiers();
    let isolated = ModuleCache::builder()
        .tiers(tiers)
        .isolate(worker(&script))
        .build();
    let module = isolated.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    assert_eq!(isolated.stats().computes, 1);
    assert_eq!(read(&kind_file), "module\n");
    isolated.flush();

    let other = ModuleCache::builder()
        .tiers(Tiered::builder().tier(Tier::new(memory)).build())
        .isolate(worker("exit 1"))
        .build();
    let module = other.get_or_compile(&engine, ANSWER.as_bytes()).unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    assert_eq!(other.stats().computes, 0);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A worker's answer is read no further than its memory limit: an artifact is held whole in the
/// worker before it is written, so more is not one, and this process does not hold it.
#[test]
fn a_worker_that_writes_more_than_its_memory_limit_is_stopped_there() {
    let limit: u64 = 64 << 20;
    // `head` streams a gigabyte in a few kilobytes of memory: only the reader's bound stops it.
    let cache = cache_with(
        worker("cat > /dev/null; head -c 1000000000 /dev/zero")
            .memory(limit)
            .timeout(Duration::from_secs(120)),
    );
    let err = cache.get_or_compile(&Engine::default(), ANSWER.as_bytes());
    // The memory limit, not the wall-time one: stopped at the bound.
    match err {
        Err(Error::OverLimit {
            limit: Limit::Memory(bytes),
            ..
        }) => assert_eq!(bytes, limit),
        other => panic!("expected the memory limit, got {other:?}"),
    }
}
