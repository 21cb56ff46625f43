//! Baseline code first: on a cold miss, code from wasmtime's one-pass compiler (Winch) is
//! served at once and the optimized (Cranelift) artifact is compiled behind it, at lower
//! priority; the next request uses the optimized one.
//!
//! Winch code runs only in an engine configured for Winch (wasmtime checks the calling
//! convention on load), so baseline artifacts belong to [`Baseline::engine`], have that
//! engine's key, and never mix with the optimized ones.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use warmcache_core::{CacheKey, Counter};
use wasmtime::{Config, Engine, Strategy};

use crate::target::TargetError;

/// How many modules Winch could not compile are remembered so each is reported once, and
/// about how many failed upgrades are remembered so that none is retried at once.
const MAX_REPORTED: usize = 4096;

/// Baseline-first compiles for one engine: the Winch engine of the same configuration, the
/// upgrades in flight, and what they did. Give it to a cache with
/// [`WasmCache::use_baseline`](crate::WasmCache::use_baseline).
///
/// A request whose optimized artifact is stored gets it. Otherwise it gets baseline code (found
/// in the tiers, or compiled with Winch in a fraction of Cranelift's time) **of this engine**:
/// create stores and linkers from the artifact's own engine (`module.engine()`). The optimized
/// artifact is then compiled in a background thread at lower priority (in the cache's worker
/// process, as the Winch compile is, when the cache
/// [isolates](crate::WasmCacheBuilder::isolate) compiles), and once it
/// is stored the baseline entry is removed from the in-process tier and every private storage
/// tier; shared tiers (a bucket) keep it for nodes still loading it, until their own eviction
/// takes it (no one looks it up once the optimized artifact is there). Instances already
/// created keep their code. A module Winch cannot compile (a proposal it lacks, such as GC, tail calls
/// or relaxed SIMD) goes straight to Cranelift, reported once in the log, never as an error.
///
/// ```
/// use std::sync::Arc;
/// use warmcache_wasmtime::{Baseline, ModuleCache};
///
/// let config = wasmtime::Config::new();
/// let engine = wasmtime::Engine::new(&config)?;
/// let baseline = Arc::new(Baseline::new(&config)?);
/// let cache = ModuleCache::builder().build();
/// cache.use_baseline(&engine, Arc::clone(&baseline));
///
/// let wasm = br#"(module (func (export "answer") (result i32) i32.const 42))"#;
/// let first = cache.get_or_compile(&engine, wasm)?;
/// assert!(wasmtime::Engine::same(first.engine(), baseline.engine()));
/// cache.flush(); // waits for the optimized compile
/// let next = cache.get_or_compile(&engine, wasm)?;
/// assert!(wasmtime::Engine::same(next.engine(), &engine));
/// assert_eq!((baseline.stats().served, baseline.stats().upgrades), (1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Baseline {
    engine: Engine,
    /// Optimized key → the baseline key serving it and when the upgrade started.
    upgrading: parking_lot::Mutex<HashMap<CacheKey, (CacheKey, Instant)>>,
    threads: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    /// The threads optimized compiles run on, at lower priority (wasmtime compiles functions
    /// in parallel on the rayon pool it is called from).
    pool: OnceLock<Option<rayon::ThreadPool>>,
    /// Baseline keys Winch failed on, reported already.
    reported: parking_lot::Mutex<HashSet<CacheKey>>,
    /// Optimized keys whose upgrade failed, and when.
    failed: parking_lot::Mutex<HashMap<CacheKey, Instant>>,
    served: AtomicU64,
    upgrades: AtomicU64,
    upgrade_nanos: AtomicU64,
    upgrade_failures: AtomicU64,
    unsupported: AtomicU64,
}

/// What a [`Baseline`] did: a snapshot of its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BaselineStats {
    /// Requests answered with baseline code (compiled with Winch or loaded).
    pub served: u64,
    /// Optimized artifacts compiled (or found) behind baseline code, after which requests use
    /// them.
    pub upgrades: u64,
    /// Time from a module's first baseline answer to its optimized artifact, summed over
    /// upgrades, in milliseconds.
    pub upgrade_ms: f64,
    /// Optimized compiles behind baseline code that failed (the module keeps its baseline
    /// code; a request after [`Baseline::RETRY_UPGRADE`] tries again).
    pub upgrade_failures: u64,
    /// Modules Winch could not compile, compiled with Cranelift at once.
    pub unsupported: u64,
}

impl BaselineStats {
    /// Every counter, with its metric name and what it counts (for printers such as the
    /// command's Prometheus output; [`upgrade_ms`](Self::upgrade_ms) is a time, not listed).
    pub const COUNTERS: &'static [Counter<BaselineStats>] = &[
        Counter::new(
            "served",
            "warmcache_baseline_served_total",
            "Requests answered with baseline (Winch) code",
            |s| s.served,
        ),
        Counter::new(
            "upgrades",
            "warmcache_baseline_upgrades_total",
            "Optimized artifacts compiled or found behind baseline code",
            |s| s.upgrades,
        ),
        Counter::new(
            "upgrade_failures",
            "warmcache_baseline_upgrade_failures_total",
            "Optimized compiles behind baseline code that failed",
            |s| s.upgrade_failures,
        ),
        Counter::new(
            "unsupported",
            "warmcache_baseline_unsupported_total",
            "Modules Winch could not compile, compiled with Cranelift at once",
            |s| s.unsupported,
        ),
    ];

    /// Adds `other`'s counts and times to these (to keep totals over runs).
    pub fn accumulate(&mut self, other: &BaselineStats) {
        self.served += other.served;
        self.upgrades += other.upgrades;
        self.upgrade_ms += other.upgrade_ms;
        self.upgrade_failures += other.upgrade_failures;
        self.unsupported += other.unsupported;
    }
}

impl Baseline {
    /// How long after a failed optimized compile its module is served baseline code without
    /// trying again: a module that Winch compiles but Cranelift cannot (or not within the
    /// worker's limits) would otherwise cost a full compile on every request.
    pub const RETRY_UPGRADE: Duration = Duration::from_secs(600);

    /// Baseline compiles for engines built from `config`: the same configuration compiled by
    /// Winch, with the proposals Winch does not implement turned off (GC, function
    /// references, tail calls, exceptions, relaxed SIMD, stack switching) so that modules
    /// using them fail Winch's validation and go to Cranelift.
    ///
    /// # Errors
    ///
    /// [`TargetError::Engine`] when wasmtime cannot build a Winch engine of this configuration:
    /// a setting Winch does not support, or an architecture (Winch compiles for x86-64 and
    /// aarch64 only; elsewhere, use the cache without a `Baseline`).
    pub fn new(config: &Config) -> Result<Self, TargetError> {
        let mut config = config.clone();
        config
            .strategy(Strategy::Winch)
            .wasm_gc(false)
            .wasm_function_references(false)
            .wasm_tail_call(false)
            .wasm_exceptions(false)
            .wasm_relaxed_simd(false)
            .wasm_stack_switching(false);
        let engine = Engine::new(&config).map_err(|e| TargetError::Engine {
            target: "this host with the Winch compiler".to_owned(),
            message: format!("{e:#}"),
        })?;
        Ok(Self {
            engine,
            upgrading: parking_lot::Mutex::default(),
            threads: parking_lot::Mutex::default(),
            pool: OnceLock::new(),
            reported: parking_lot::Mutex::default(),
            failed: parking_lot::Mutex::default(),
            served: AtomicU64::new(0),
            upgrades: AtomicU64::new(0),
            upgrade_nanos: AtomicU64::new(0),
            upgrade_failures: AtomicU64::new(0),
            unsupported: AtomicU64::new(0),
        })
    }

    /// The Winch engine baseline artifacts belong to.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BaselineStats {
        BaselineStats {
            served: self.served.load(Relaxed),
            upgrades: self.upgrades.load(Relaxed),
            upgrade_ms: self.upgrade_nanos.load(Relaxed) as f64 / 1e6,
            upgrade_failures: self.upgrade_failures.load(Relaxed),
            unsupported: self.unsupported.load(Relaxed),
        }
    }

    /// Whether an optimized compile runs behind baseline code right now.
    pub fn upgrading(&self) -> bool {
        !self.upgrading.lock().is_empty()
    }

    /// Blocks until every optimized compile started so far has finished.
    pub fn wait(&self) {
        loop {
            let threads = std::mem::take(&mut *self.threads.lock());
            if threads.is_empty() {
                return;
            }
            for thread in threads {
                // The thread catches its own panics; a join error cannot carry one.
                let _ = thread.join();
            }
        }
    }

    /// The baseline key serving `optimized` while its upgrade runs.
    pub(crate) fn serving(&self, optimized: &CacheKey) -> Option<CacheKey> {
        self.upgrading.lock().get(optimized).map(|(key, _)| *key)
    }

    pub(crate) fn count_served(&self) {
        self.served.fetch_add(1, Relaxed);
    }

    /// Counts a module Winch could not compile; true the first time for `key`.
    pub(crate) fn count_unsupported(&self, key: CacheKey) -> bool {
        self.unsupported.fetch_add(1, Relaxed);
        let mut reported = self.reported.lock();
        if reported.len() >= MAX_REPORTED {
            reported.clear();
        }
        reported.insert(key)
    }

    /// Registers the upgrade of `optimized`, served by `baseline` meanwhile; false when one
    /// already runs or failed less than [`Self::RETRY_UPGRADE`] ago.
    pub(crate) fn begin(&self, optimized: CacheKey, baseline: CacheKey) -> bool {
        if let Some(when) = self.failed.lock().get(&optimized)
            && when.elapsed() < Self::RETRY_UPGRADE
        {
            return false;
        }
        let mut upgrading = self.upgrading.lock();
        if upgrading.contains_key(&optimized) {
            return false;
        }
        upgrading.insert(optimized, (baseline, Instant::now()));
        true
    }

    /// Ends the upgrade of `optimized`.
    pub(crate) fn finish(&self, optimized: &CacheKey, upgraded: bool) {
        let Some((_, started)) = self.upgrading.lock().remove(optimized) else {
            return;
        };
        let mut failed = self.failed.lock();
        if upgraded {
            failed.remove(optimized);
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.upgrades.fetch_add(1, Relaxed);
            self.upgrade_nanos.fetch_add(nanos, Relaxed);
        } else {
            if failed.len() >= MAX_REPORTED {
                failed.retain(|_, when| when.elapsed() < Self::RETRY_UPGRADE);
                let oldest = failed.iter().min_by_key(|(_, when)| **when);
                if let Some(oldest) = oldest.map(|(key, _)| *key) {
                    failed.remove(&oldest);
                }
            }
            failed.insert(*optimized, Instant::now());
            self.upgrade_failures.fetch_add(1, Relaxed);
        }
    }

    /// Runs `f` on the low-priority pool (on this thread, lowered, if the pool cannot start).
    pub(crate) fn on_low_priority<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let pool = self.pool.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .thread_name(|i| format!("warmcache-optimize-{i}"))
                .start_handler(|_| lower_priority())
                .build()
                .inspect_err(|e| tracing::debug!("no pool for optimized compiles: {e}"))
                .ok()
        });
        match pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    pub(crate) fn keep(&self, thread: JoinHandle<()>) {
        let mut threads = self.threads.lock();
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }
}

/// Lowers the calling thread's scheduling priority (Linux priorities are per thread, and a
/// compile worker started from this thread inherits it), so optimized compiles behind
/// baseline code yield to the code serving requests.
pub(crate) fn lower_priority() {
    // Elsewhere `setpriority` would lower the whole process, requests and all.
    #[cfg(target_os = "linux")]
    {
        let now = rustix::process::getpriority_process(None).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(None, (now + 10).min(19)) {
            tracing::debug!("could not lower the priority of an optimized compile: {e}");
        }
    }
}
