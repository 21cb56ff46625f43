//! The whole stack under random operations, checked against a model (after foyer's hybrid-cache
//! fuzzy test and redb's fuzzer): a cache over a small memory tier, a small file tier, a redb
//! tier that fails one operation in ten, and a persistent object store, driven by a seeded
//! sequence of reads, concurrent reads, reopens, damaged and deleted entries.
//!
//! The model knows each input's value and whether the object store holds a verified copy. It
//! asserts that every read returns the right value, that nothing is computed while the store
//! holds the entry, that concurrent readers compute once, and that no damage is reported that
//! was not injected. `WARMCACHE_STACK_SEEDS` (default 3) and `WARMCACHE_STACK_OPS` (default
//! 300) scale it; a failure names the seed and the step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::executor::block_on;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warmcache_conformance::{FaultConfig, FaultedOps, FaultyBackend};
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, BytesCodec, Cache, CacheKey, Integrity, Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_memory::MemoryBackend;
use warmcache_redb::RedbBackend;
use warmcache_s3::S3Backend;

/// Distinct inputs: more than the memory and file tiers hold, so both evict.
const INPUTS: u32 = 40;

const SECRET: &[u8] = b"the stack test's own secret!";

/// Computations of this test's values, across threads.
static COMPUTED: AtomicU64 = AtomicU64::new(0);

/// The value of input `i`: 100 B to about 20 KiB, different for every input.
fn value_of(i: u32) -> Bytes {
    let len = 100 + (i as usize * 7919) % 20_000;
    Bytes::from(
        (0..len)
            .map(|n| (n as u32).wrapping_mul(31).wrapping_add(i) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn compute(input: &(String, u32)) -> Result<Bytes, std::io::Error> {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    Ok(value_of(input.1))
}

fn input(i: u32) -> (String, u32) {
    (format!("module-{i}"), i)
}

/// The stack, opened over the directories of `dir`: what a process restart sees.
struct Stack {
    cache: Cache<Bytes, BytesCodec>,
    tiers: Vec<Arc<dyn Backend>>,
    store: Arc<dyn Backend>,
}

fn open(dir: &Path, seed: u64) -> Stack {
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::with_capacity(64 << 10).unwrap());
    let files: Arc<dyn Backend> = Arc::new(
        FsBackend::builder(dir.join("files"))
            .capacity(128 << 10)
            .open()
            .unwrap(),
    );
    let redb: Arc<dyn Backend> = Arc::new(FaultyBackend::new(
        Arc::new(RedbBackend::open(dir.join("cache.redb")).unwrap()),
        // Reads only: a failed delete would leave a damaged entry to be reported twice.
        FaultConfig {
            error_rate: 0.1,
            seed,
            ops: FaultedOps::Reads,
            ..FaultConfig::default()
        },
    ));
    // Private to this "host" (not shared): damaged entries are replaced, so the model can
    // count on the store again after the next computation.
    let url = format!("file://{}", dir.join("bucket").display());
    let store: Arc<dyn Backend> = Arc::new(S3Backend::builder(url).build().unwrap());
    let tiers = vec![memory, files, redb, store.clone()];
    let mut builder =
        Tiered::builder().integrity(Integrity::keyed(b"the stack test's own secret!"));
    for (n, tier) in tiers.iter().enumerate() {
        builder = builder.tier(Tier::new(tier.clone()).name(format!("tier{n}")));
    }
    let cache = Cache::builder("stack", BytesCodec)
        .tiers(builder.build())
        .build();
    Stack {
        cache,
        tiers,
        store,
    }
}

/// What the model knows of one input.
#[derive(Clone, Copy, Default)]
struct Known {
    /// The object store holds a verified copy: reading the input computes nothing.
    stored: bool,
}

fn run(seed: u64, ops: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stack = open(dir.path(), seed);
    let mut model = vec![Known::default(); INPUTS as usize];
    let mut damaged = 0u64;
    let mut reported = 0u64;
    for step in 0..ops {
        let at = format!("seed {seed}, step {step}");
        let i = rng.random_range(0..INPUTS);
        let key: CacheKey = stack.cache.key_for(&input(i));
        match rng.random_range(0..100) {
            // A read.
            0..=59 => {
                let before = COMPUTED.load(Ordering::SeqCst);
                let got = stack.cache.get_or_compute(&input(i), compute).unwrap();
                assert_eq!(got, value_of(i), "{at}: read of input {i}");
                let computed = COMPUTED.load(Ordering::SeqCst) - before;
                if model[i as usize].stored {
                    assert_eq!(computed, 0, "{at}: input {i} computed though stored");
                }
                assert!(computed <= 1, "{at}: input {i} computed {computed} times");
                // A computed value is written to every tier; a hit is promoted into faster
                // tiers only, which leaves the store as it was.
                model[i as usize].stored |= computed > 0;
            }
            // Four threads read one input at once: one computes at most.
            60..=69 => {
                let before = COMPUTED.load(Ordering::SeqCst);
                std::thread::scope(|s| {
                    for _ in 0..4 {
                        s.spawn(|| {
                            let got = stack.cache.get_or_compute(&input(i), compute).unwrap();
                            assert_eq!(got, value_of(i), "{at}: concurrent read of input {i}");
                        });
                    }
                });
                let computed = COMPUTED.load(Ordering::SeqCst) - before;
                let most = u64::from(!model[i as usize].stored);
                assert!(
                    computed <= most,
                    "{at}: 4 readers of input {i} computed {computed}"
                );
                model[i as usize].stored |= computed > 0;
            }
            // The process forgets what it holds in memory, or restarts.
            70..=74 => stack.cache.clear_live(),
            75..=79 => {
                reported += rejected(&stack.cache);
                drop(stack);
                stack = open(dir.path(), seed.wrapping_add(step as u64));
            }
            // A disk or the store damages one bit of a stored entry.
            80..=89 => {
                let t = rng.random_range(0..stack.tiers.len());
                let tier = &stack.tiers[t];
                if let Ok(Some(bytes)) = block_on(tier.get(&key)) {
                    if bytes.is_empty() {
                        continue;
                    }
                    let mut bad = bytes.to_vec();
                    let bit = rng.random_range(0..bad.len() * 8);
                    bad[bit / 8] ^= 1 << (bit % 8);
                    if block_on(tier.put(&key, Bytes::from(bad))).is_ok() {
                        damaged += 1;
                        if Arc::ptr_eq(tier, &stack.store) {
                            model[i as usize].stored = false;
                        }
                    }
                }
            }
            // An operator or eviction removes an entry from one tier.
            _ => {
                let t = rng.random_range(0..stack.tiers.len());
                let tier = &stack.tiers[t];
                if block_on(tier.delete(&key)).is_ok() && Arc::ptr_eq(tier, &stack.store) {
                    model[i as usize].stored = false;
                }
            }
        }
    }
    reported += rejected(&stack.cache);
    assert!(
        reported <= damaged,
        "seed {seed}: {reported} damaged entries reported, {damaged} injected"
    );
    // Everything the model counts as stored is in the store, verified, and read without a
    // computation after a restart.
    drop(stack);
    let stack = open(dir.path(), seed);
    for (i, known) in model.iter().enumerate() {
        if known.stored {
            let key = stack.cache.key_for(&input(i as u32));
            let held = block_on(stack.store.get(&key)).unwrap();
            let held = held.unwrap_or_else(|| panic!("seed {seed}: input {i} not in the store"));
            let entry = Integrity::keyed(SECRET)
                .open(&key, &held)
                .unwrap_or_else(|e| panic!("seed {seed}: input {i} in the store: {e}"));
            assert_eq!(
                entry.to_bytes(),
                value_of(i as u32),
                "seed {seed}: input {i}"
            );
            let before = COMPUTED.load(Ordering::SeqCst);
            let got = stack
                .cache
                .get_or_compute(&input(i as u32), compute)
                .unwrap();
            assert_eq!(got, value_of(i as u32));
            assert_eq!(
                COMPUTED.load(Ordering::SeqCst),
                before,
                "seed {seed}: input {i} lost from the store"
            );
        }
    }
}

/// Entries the tiers rejected: damaged (a bad tag) or, under a secret, a bad MAC, which is what
/// a flipped bit looks like there.
fn rejected(cache: &Cache<Bytes, BytesCodec>) -> u64 {
    let stats = cache.stats();
    stats.corrupt() + stats.forged()
}

fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_operations_on_the_whole_stack_agree_with_the_model() {
    let seeds = from_env("WARMCACHE_STACK_SEEDS", 3);
    let ops = from_env("WARMCACHE_STACK_OPS", 300) as usize;
    for seed in 0..seeds {
        run(seed, ops);
    }
}
