//! Trace-driven simulation of eviction over the real disk tiers: how many compile-seconds each
//! policy loses to eviction, and its byte hit rate, on Zipf-distributed requests for a
//! population of modules with the sizes and compile times of the benchmark corpus.
//!
//! Each request is a `get` on a real store (fs, redb, RocksDB with the `rocksdb` feature); a
//! miss "compiles" (nothing runs: the module's compile time is counted as lost when the module
//! was stored before, i.e. eviction took it) and `put`s an envelope of the module's scaled
//! size recording its compile time, as the cache does. The static oracle keeps the most
//! popular modules that fit, knowing the law: no online policy does much better on such a
//! trace.
//!
//! `scripts/bench-eviction.sh` runs it; options (after `--`): `--modules=N` (300),
//! `--requests=N` (20000), `--skews=0.6,0.8,1.0,1.2`, `--capacities=10,25,50` (percent of the
//! population's bytes), `--scale=N` (artifact sizes divided by N, 128), `--backends=fs,redb,
//! rocksdb`, `--dir=PATH` (where the stores go; a tmpfs keeps fsync out of the timing),
//! `--deploys=N` (every N requests, the 20 most popular modules are replaced by new versions:
//! new keys, same sizes and compile times; popularity that shifts, where a policy that holds on
//! to past use loses; no oracle then).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use warmcache_core::backend::Eviction;
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, Compression, Integrity, KeyBuilder, Origin};

/// The corpus: (name, artifact bytes, cold compile ms), as `docs/BENCHMARKS.md` measured them.
const CORPUS: [(&str, f64, f64); 6] = [
    ("built-in", 101.7 * 1024.0, 20.35),
    ("icepll", 151.7 * 1024.0, 29.61),
    ("boolector", 2.9 * 1048576.0, 584.43),
    ("resvg", 5.2 * 1048576.0, 866.43),
    ("esbuild", 29.9 * 1048576.0, 5670.0),
    ("yosys", 64.2 * 1048576.0, 13430.0),
];

struct Options {
    modules: usize,
    requests: usize,
    skews: Vec<f64>,
    capacities: Vec<u64>,
    scale: f64,
    backends: Vec<String>,
    dir: PathBuf,
    deploys: Option<usize>,
}

impl Options {
    fn parse() -> Self {
        let mut o = Options {
            modules: 300,
            requests: 20_000,
            skews: vec![0.6, 0.8, 1.0, 1.2],
            capacities: vec![10, 25, 50],
            scale: 128.0,
            backends: vec!["fs".into(), "redb".into(), "rocksdb".into()],
            dir: std::env::temp_dir(),
            deploys: None,
        };
        for arg in std::env::args().skip(1) {
            let Some((name, value)) = arg.split_once('=') else {
                continue; // `--bench`, passed by cargo
            };
            let list = || value.split(',').map(str::trim);
            match name {
                "--modules" => o.modules = value.parse().expect("--modules=N"),
                "--requests" => o.requests = value.parse().expect("--requests=N"),
                "--skews" => o.skews = list().map(|s| s.parse().expect("--skews")).collect(),
                "--capacities" => {
                    o.capacities = list().map(|s| s.parse().expect("--capacities")).collect();
                }
                "--scale" => o.scale = value.parse().expect("--scale=N"),
                "--backends" => o.backends = list().map(str::to_owned).collect(),
                "--dir" => o.dir = PathBuf::from(value),
                "--deploys" => o.deploys = Some(value.parse().expect("--deploys=N")),
                other => panic!("unknown option {other}"),
            }
        }
        o
    }
}

/// splitmix64: a fixed, seedable stream, so every policy sees the same trace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone)]
struct Module {
    key: CacheKey,
    /// The payload's length (the entry adds its trailer).
    size: usize,
    /// The stored envelope (scaled size), recording the compile time.
    entry: Bytes,
    /// Unscaled compile time, ms.
    compile_ms: f64,
}

impl Module {
    /// Module `id`: `size` bytes stored, `compile_ms` to compile.
    fn new(id: u64, size: usize, compile_ms: f64) -> Self {
        let key = KeyBuilder::new("eviction-sim").integer(id).finish();
        let origin = Origin::new(1, "sim").compute_ms(compile_ms as u64);
        let payload = vec![(id % 251) as u8; size];
        let entry = Integrity::plain().seal_origin(&key, &origin, &payload, Compression::None);
        Module {
            key,
            size,
            entry,
            compile_ms,
        }
    }

    /// A new version of this module, as module `id`: another key, the same size and cost.
    fn next_version(&self, id: u64) -> Self {
        Self::new(id, self.size, self.compile_ms)
    }
}

/// The population: module `i` is corpus program `i % 6`, its size and compile time both
/// multiplied by one factor drawn log-uniformly from [0.5, 2] (programs of each kind differ in
/// size; compile time follows code size, as in the corpus, at 167-209 ms per MiB).
fn population(o: &Options) -> Vec<Module> {
    let mut rng = Rng(42);
    (0..o.modules)
        .map(|i| {
            let (_, bytes, ms) = CORPUS[i % CORPUS.len()];
            let factor = (std::f64::consts::LN_2 * (2.0 * rng.unit() - 1.0)).exp();
            let size = ((bytes * factor / o.scale) as usize).max(64);
            Module::new(i as u64, size, ms * factor)
        })
        .collect()
}

/// Requests: module of popularity rank `r` (a fixed shuffle of the modules) with probability
/// proportional to `1 / (r + 1)^skew`; with deploys, new versions of the most popular are
/// added to `modules` and take their ranks. Also returns the modules by popularity at the end.
fn trace(o: &Options, skew: f64, modules: &mut Vec<Module>) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Rng(7 + (skew * 1000.0) as u64);
    let mut by_rank: Vec<usize> = (0..o.modules).collect();
    for i in (1..by_rank.len()).rev() {
        by_rank.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let mut cdf = Vec::with_capacity(o.modules);
    let mut sum = 0.0;
    for r in 0..o.modules {
        sum += 1.0 / ((r + 1) as f64).powf(skew);
        cdf.push(sum);
    }
    let requests = (0..o.requests)
        .map(|i| {
            if o.deploys.is_some_and(|every| i > 0 && i % every == 0) {
                for rank in by_rank.iter_mut().take(20) {
                    let id = modules.len();
                    modules.push(modules[*rank].next_version(id as u64));
                    *rank = id;
                }
            }
            let u = rng.unit() * sum;
            by_rank[cdf.partition_point(|&c| c < u).min(o.modules - 1)]
        })
        .collect();
    (requests, by_rank)
}

#[derive(Default, Clone, Copy)]
struct Outcome {
    lost_s: f64,
    hit_bytes: f64,
    requested_bytes: f64,
    puts: u64,
    elapsed: Duration,
}

impl Outcome {
    fn byte_hit_rate(&self) -> f64 {
        self.hit_bytes / self.requested_bytes
    }
}

fn replay(store: &dyn Backend, modules: &[Module], requests: &[usize]) -> Outcome {
    let mut out = Outcome::default();
    let mut stored = HashSet::new();
    let start = Instant::now();
    for &m in requests {
        let module = &modules[m];
        let size = module.entry.len() as f64;
        out.requested_bytes += size;
        if block_on(store.get(&module.key)).expect("get").is_some() {
            out.hit_bytes += size;
            continue;
        }
        if !stored.insert(m) {
            out.lost_s += module.compile_ms / 1000.0;
        }
        block_on(store.put(&module.key, module.entry.clone())).expect("put");
        out.puts += 1;
    }
    out.elapsed = start.elapsed();
    out
}

/// What keeping the most popular modules that fit, and nothing else, loses.
fn oracle(modules: &[Module], requests: &[usize], by_rank: &[usize], capacity: u64) -> f64 {
    let mut kept = HashSet::new();
    let mut used = 0u64;
    for &m in by_rank {
        let size = modules[m].entry.len() as u64;
        if used + size <= capacity {
            kept.insert(m);
            used += size;
        }
    }
    let mut seen = HashSet::new();
    requests
        .iter()
        .filter(|&&m| !seen.insert(m) && !kept.contains(&m))
        .map(|&m| modules[m].compile_ms / 1000.0)
        .sum()
}

fn open(kind: &str, dir: &Path, capacity: u64, policy: Eviction) -> Arc<dyn Backend> {
    match kind {
        // Every use recorded: the simulated hours pass in seconds.
        "fs" => Arc::new(
            warmcache_fs::FsBackend::builder(dir)
                .capacity(capacity)
                .touch_interval(Duration::ZERO)
                .eviction(policy)
                .open()
                .expect("fs"),
        ),
        "redb" => Arc::new(
            warmcache_redb::RedbBackend::builder(dir.join("cache.redb"))
                .capacity(capacity)
                .eviction(policy)
                .open()
                .expect("redb"),
        ),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Arc::new(
            warmcache_rocksdb::RocksDbBackend::builder(dir)
                .capacity(capacity)
                .eviction(policy)
                .open()
                .expect("rocksdb"),
        ),
        other => panic!("no backend {other} in this build (rocksdb needs --features rocksdb)"),
    }
}

fn main() {
    let o = Options::parse();
    let population = population(&o);
    let total: u64 = population.iter().map(|m| m.entry.len() as u64).sum();
    println!(
        "{} modules, {:.1} MiB stored (artifact sizes / {}), {} requests per run\n",
        o.modules,
        total as f64 / 1048576.0,
        o.scale,
        o.requests
    );
    if let Some(every) = o.deploys {
        println!(
            "every {every} requests, the 20 most popular modules are replaced by new versions\n"
        );
    }
    println!(
        "| backend | skew | capacity | LRU lost (s) | cost lost (s) | fewer | oracle lost (s) | \
         LRU byte hits | cost byte hits | puts LRU / cost | run LRU / cost (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for backend in &o.backends {
        for &skew in &o.skews {
            let mut modules = population.clone();
            let (requests, by_rank) = trace(&o, skew, &mut modules);
            for &percent in &o.capacities {
                let capacity = total * percent / 100;
                let run = |policy| {
                    let dir = tempfile::tempdir_in(&o.dir).expect("temporary directory");
                    let store = open(backend, dir.path(), capacity, policy);
                    replay(&*store, &modules, &requests)
                };
                let lru = run(Eviction::Lru);
                let cost = run(Eviction::Cost);
                let best = match o.deploys {
                    Some(_) => "-".to_owned(),
                    None => format!("{:.0}", oracle(&modules, &requests, &by_rank, capacity)),
                };
                println!(
                    "| {backend} | {skew} | {percent}% | {:.0} | {:.0} | {:.0}% | {best} | \
                     {:.3} | {:.3} | {} / {} | {:.1} / {:.1} |",
                    lru.lost_s,
                    cost.lost_s,
                    100.0 * (1.0 - cost.lost_s / lru.lost_s),
                    lru.byte_hit_rate(),
                    cost.byte_hit_rate(),
                    lru.puts,
                    cost.puts,
                    lru.elapsed.as_secs_f64(),
                    cost.elapsed.as_secs_f64(),
                );
            }
        }
    }
}
