//! When a flight ends and what its waiters inherit (issue 11, bugs 1 and 2):
//!
//! * a flight ends only once its result can be found, so a request arriving while the leader
//!   is still writing its artifact to storage does not compile again;
//! * a waiter on another engine (equal settings) gets its module from the leader's artifact,
//!   never by compiling;
//! * only the compile's own failure is shared; a leader whose input could not be loaded fails
//!   alone and the waiters go on with their own input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use warmcache_wasmtime::Wasm;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use common::{ANSWER, call_answer, many_functions};
use warmcache_core::bytes::Bytes;
use warmcache_core::{
    Backend, CacheKey, Capabilities, ListPage, Result, Tier, Tiered, Usage, async_trait,
};
use warmcache_memory::MemoryBackend;
use warmcache_wasmtime::{ContentHash, Error, ModuleCache};
use wasmtime::{Config, Engine, Module};

/// Deadlock detection only: generous, never a timing assertion.
const STUCK: Duration = Duration::from_secs(120);

/// A memory backend whose puts can be held: the first put reports that it started and then
/// waits until the test releases it (or sleeps for a fixed time, as a slow disk would).
#[derive(Debug)]
struct SlowPuts {
    inner: MemoryBackend,
    hold_first: AtomicBool,
    sleep: Duration,
    started: Mutex<Option<mpsc::Sender<()>>>,
    released: Mutex<bool>,
    release: Condvar,
    puts: AtomicU64,
}

impl SlowPuts {
    fn new(sleep: Duration, hold_first: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryBackend::with_capacity(256 << 20).unwrap(),
            hold_first: AtomicBool::new(hold_first),
            sleep,
            started: Mutex::new(None),
            released: Mutex::new(false),
            release: Condvar::new(),
            puts: AtomicU64::new(0),
        })
    }

    fn on_first_put(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        *self.started.lock().unwrap() = Some(tx);
        rx
    }

    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.release.notify_all();
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Backend for SlowPuts {
    fn name(&self) -> &str {
        "slow-puts"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.hold_first.swap(false, Ordering::SeqCst) {
            if let Some(tx) = self.started.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let mut released = self.released.lock().unwrap();
            while !*released {
                let (guard, timeout) = self.release.wait_timeout(released, STUCK).unwrap();
                assert!(!timeout.timed_out(), "the test never released the put");
                released = guard;
            }
        }
        std::thread::sleep(self.sleep);
        self.inner.put(key, value).await
    }
    async fn delete(&self, key: &CacheKey) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.inner.contains(key).await
    }
    async fn clear(&self) -> Result<()> {
        self.inner.clear().await
    }
    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        self.inner.list(after, limit).await
    }
    async fn usage(&self) -> Result<Usage> {
        self.inner.usage().await
    }
    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        self.inner.get_tail(key, len).await
    }
    async fn open_file(&self, key: &CacheKey) -> Result<Option<std::fs::File>> {
        self.inner.open_file(key).await
    }
    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        self.inner.shrink_to(max_bytes).await
    }
    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: std::time::Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn warmcache_core::backend::Lease>>> {
        self.inner.try_lease(key, ttl, holder).await
    }
    async fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        self.inner.pin(key, pinned).await
    }
}

fn tiers(backend: &Arc<SlowPuts>) -> Tiered {
    Tiered::builder()
        .tier(Tier::new(backend.clone() as Arc<dyn Backend>))
        .build()
}

/// A request that arrives after the leader compiled but before its storage write finished gets
/// the leader's module (the flight is not over yet), with the live tier unable to hold it.
fn request_during_the_write_does_not_compile(cache: ModuleCache, backend: Arc<SlowPuts>) {
    let cache = Arc::new(cache);
    let engine = Engine::default();
    let wasm = Arc::new(ANSWER.as_bytes().to_vec());
    let started = backend.on_first_put();
    let leader = {
        let (cache, engine, wasm) = (cache.clone(), engine.clone(), wasm.clone());
        thread::spawn(move || cache.get_or_compile(&engine, wasm.as_slice()).map(|_| ()))
    };
    started.recv_timeout(STUCK).unwrap();
    // The leader has compiled and is writing; this request must not compile.
    let module = cache.get_or_compile(&engine, wasm.as_slice()).unwrap();
    backend.release();
    leader.join().unwrap().unwrap();
    assert_eq!(call_answer(&engine, &module), 42);
    assert_eq!(
        cache.stats().computes,
        1,
        "a request during the write compiled"
    );
}

#[test]
fn no_live_tier_request_during_the_write_does_not_compile() {
    let backend = SlowPuts::new(Duration::ZERO, true);
    let cache = ModuleCache::builder()
        .tiers(tiers(&backend))
        .live_capacity(0)
        .build();
    request_during_the_write_does_not_compile(cache, backend);
}

#[test]
fn module_over_live_bytes_request_during_the_write_does_not_compile() {
    let backend = SlowPuts::new(Duration::ZERO, true);
    let cache = ModuleCache::builder()
        .tiers(tiers(&backend))
        .live_bytes(1)
        .build();
    request_during_the_write_does_not_compile(cache, backend);
}

fn same_settings() -> Config {
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

/// A leader on engine A and eight waiters on engine B (equal `Config`), with a tier whose put
/// takes 300 ms: one compile in all, and every waiter's module belongs to engine B.
#[test]
fn waiters_on_another_engine_load_the_leaders_artifact() {
    const WAITERS: u64 = 8;
    let backend = SlowPuts::new(Duration::from_millis(300), false);
    let cache = Arc::new(ModuleCache::new(tiers(&backend)));
    let engine_a = Engine::new(&same_settings()).unwrap();
    let engine_b = Engine::new(&same_settings()).unwrap();
    let wasm = many_functions(50, 3).into_bytes();
    let content = ContentHash::of(&wasm);
    assert_eq!(
        cache.key_for(&engine_a, &ContentHash::of(&wasm)),
        cache.key_for(&engine_b, &ContentHash::of(&wasm))
    );

    let (loading_tx, loading_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let leader = {
        let (cache, engine, wasm) = (cache.clone(), engine_a.clone(), wasm.clone());
        thread::spawn(move || {
            cache
                .get_or_compile(
                    &engine,
                    Wasm::hashed(content, move || {
                        loading_tx.send(()).unwrap();
                        go_rx.recv_timeout(STUCK).unwrap();
                        Ok::<_, std::io::Error>(wasm)
                    }),
                )
                .unwrap()
        })
    };
    loading_rx.recv_timeout(STUCK).unwrap();
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (cache, engine, wasm) = (cache.clone(), engine_b.clone(), wasm.clone());
            thread::spawn(move || {
                let module = cache
                    .get_or_compile(
                        &engine,
                        Wasm::hashed(content, || Ok::<_, std::io::Error>(wasm)),
                    )
                    .unwrap();
                assert!(Engine::same(module.engine(), &engine));
                call_answer(&engine, &module)
            })
        })
        .collect();
    while cache.stats().waits < WAITERS {
        thread::sleep(Duration::from_millis(1));
    }
    go_tx.send(()).unwrap();
    let module: Module = leader.join().unwrap();
    assert!(Engine::same(module.engine(), &engine_a));
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), 42);
    }
    assert_eq!(cache.stats().computes, 1, "waiters on engine B compiled");
}

/// The leader's own input failure (its loader's I/O error, or bytes that do not match the hash)
/// is its own: every waiter, whose loader works, gets a module, and one of them compiles.
fn leaders_input_failure_is_not_shared(
    leader_load: fn(Vec<u8>) -> std::result::Result<Vec<u8>, std::io::Error>,
    leader_error: fn(&Error) -> bool,
) {
    const WAITERS: u64 = 8;
    let cache = Arc::new(ModuleCache::new(Tiered::builder().build()));
    let engine = Engine::default();
    let wasm = ANSWER.as_bytes().to_vec();
    let content = ContentHash::of(&wasm);
    let (loading_tx, loading_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let leader = {
        let (cache, engine, wasm) = (cache.clone(), engine.clone(), wasm.clone());
        thread::spawn(move || {
            cache.get_or_compile(
                &engine,
                Wasm::hashed(content, move || {
                    loading_tx.send(()).unwrap();
                    go_rx.recv_timeout(STUCK).unwrap();
                    leader_load(wasm)
                }),
            )
        })
    };
    loading_rx.recv_timeout(STUCK).unwrap();
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (cache, engine, wasm) = (cache.clone(), engine.clone(), wasm.clone());
            thread::spawn(move || {
                cache
                    .get_or_compile(
                        &engine,
                        Wasm::hashed(content, || Ok::<_, std::io::Error>(wasm)),
                    )
                    .map(|module| call_answer(&engine, &module))
            })
        })
        .collect();
    while cache.stats().waits < WAITERS {
        thread::sleep(Duration::from_millis(1));
    }
    go_tx.send(()).unwrap();
    let err = leader.join().unwrap().unwrap_err();
    assert!(leader_error(&err), "leader got {err:?}");
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap().unwrap(), 42);
    }
    assert_eq!(cache.stats().computes, 1);
}

#[test]
fn leaders_load_error_is_not_shared() {
    leaders_input_failure_is_not_shared(
        |_| Err(std::io::Error::other("code store unreachable")),
        |e| matches!(e, Error::Source { .. }),
    );
}

#[test]
fn leaders_wrong_bytes_are_not_shared() {
    leaders_input_failure_is_not_shared(
        |mut wasm| {
            wasm.push(b' ');
            Ok(wasm)
        },
        |e| matches!(e, Error::HashMismatch { .. }),
    );
}
