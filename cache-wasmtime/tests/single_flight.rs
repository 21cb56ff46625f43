//! Single-flight: concurrent requests for one cold artifact compile it once, a failing compile
//! hands the same error to every waiter and caches nothing, and other artifacts never wait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use warmcache_wasmtime::Wasm;

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{ANSWER, call_answer, many_functions, memory_tiers};
use warmcache_core::Backend;
use warmcache_wasmtime::{ContentHash, ModuleCache};
use wasmtime::Engine;

const THREADS: usize = 64;

/// Deadlock detection only: generous, never a timing assertion.
const STUCK: Duration = Duration::from_secs(120);

#[test]
fn sixty_four_threads_compile_a_cold_module_once() {
    let (_memory, tiers) = memory_tiers();
    let cache = Arc::new(ModuleCache::new(tiers));
    let engine = Engine::default();
    let wasm = Arc::new(many_functions(300, 7).into_bytes());
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, engine, wasm, start) =
                (cache.clone(), engine.clone(), wasm.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let module = cache.get_or_compile(&engine, wasm.as_slice()).unwrap();
                call_answer(&engine, &module)
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), 42);
    }
    let stats = cache.stats();
    assert_eq!(stats.computes, 1);
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.waits + stats.live_hits, THREADS as u64 - 1);
}

/// Starts `THREADS` requests for `content` whose leader's `load` blocks until every other
/// request is waiting for it, then returns what `load` returns. Returns the results.
fn gated_requests(
    cache: &Arc<ModuleCache>,
    engine: &Engine,
    content: ContentHash,
    bytes: Vec<u8>,
    while_gated: impl FnOnce(),
) -> Vec<Result<wasmtime::Module, warmcache_wasmtime::Error>> {
    let (opened_tx, opened_rx) = mpsc::channel::<()>();
    let opened_rx = Arc::new(std::sync::Mutex::new(opened_rx));
    let (loading_tx, loading_rx) = mpsc::channel::<()>();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, engine, bytes) = (cache.clone(), engine.clone(), bytes.clone());
            let (opened_rx, loading_tx) = (opened_rx.clone(), loading_tx.clone());
            thread::spawn(move || {
                cache.get_or_compile(
                    &engine,
                    Wasm::hashed(content, || {
                        loading_tx.send(()).unwrap();
                        opened_rx.lock().unwrap().recv_timeout(STUCK).unwrap();
                        Ok::<_, std::io::Error>(bytes)
                    }),
                )
            })
        })
        .collect();
    // One leader is loading; wait until the other 63 are waiting for it.
    loading_rx.recv_timeout(STUCK).unwrap();
    while cache.stats().waits < THREADS as u64 - 1 {
        thread::sleep(Duration::from_millis(1));
    }
    while_gated();
    opened_tx.send(()).unwrap();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        loading_rx.try_recv().is_err(),
        "a second caller loaded the wasm"
    );
    results
}

#[test]
fn waiters_share_the_leaders_module() {
    let (_memory, tiers) = memory_tiers();
    let cache = Arc::new(ModuleCache::new(tiers));
    let engine = Engine::default();
    let wasm = wat::parse_str(ANSWER).unwrap();
    let results = gated_requests(&cache, &engine, ContentHash::of(&wasm), wasm, || {});
    for result in results {
        assert_eq!(call_answer(&engine, &result.unwrap()), 42);
    }
    assert_eq!(cache.stats().computes, 1);
}

#[test]
fn a_failing_compile_gives_every_waiter_the_same_error_caches_nothing_and_delays_no_one() {
    let (memory, tiers) = memory_tiers();
    let cache = Arc::new(ModuleCache::new(tiers));
    let engine = Engine::default();
    let invalid = b"\0asm\x01\0\0\0\x03\x02\x01\x05".to_vec(); // a function section without types
    let content = ContentHash::of(&invalid);

    let results = gated_requests(&cache, &engine, content, invalid, || {
        // While all 64 wait on the failing module, another module compiles and loads.
        let (done_tx, done_rx) = mpsc::channel();
        let (other_cache, other_engine) = (cache.clone(), engine.clone());
        thread::spawn(move || {
            let module = other_cache
                .get_or_compile(&other_engine, ANSWER.as_bytes())
                .unwrap();
            done_tx.send(call_answer(&other_engine, &module)).unwrap();
        });
        assert_eq!(
            done_rx
                .recv_timeout(STUCK)
                .expect("the other module waited"),
            42
        );
    });

    let messages: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap_err().to_string())
        .collect();
    assert!(messages[0].contains("compiling module"), "{}", messages[0]);
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
    let stats = cache.stats();
    assert_eq!(
        stats.computes, 2,
        "one for the failing module, one for the other"
    );
    assert_eq!(stats.compute_errors, 1);
    let usage = futures::executor::block_on(memory.usage()).unwrap();
    assert_eq!(usage.entries, 1, "only the other module is stored");

    // Nothing was cached for the failure: asking again compiles (and fails) again.
    let again = cache
        .get_or_compile(
            &engine,
            Wasm::hashed(content, || {
                Ok::<_, std::io::Error>(b"\0asm\x01\0\0\0\x03\x02\x01\x05".to_vec())
            }),
        )
        .unwrap_err();
    assert_eq!(again.to_string(), messages[0]);
    assert_eq!(cache.stats().compute_errors, 2);
}
