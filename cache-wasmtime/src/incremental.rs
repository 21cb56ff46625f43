//! [`IncrementalCache`]: Cranelift's incremental compilation cache over warmcache tiers.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warmcache_core::{CacheKey, Namespace, TierStats, Tiered};

use crate::key::WASMTIME_VERSION;

/// Envelope kind of incremental cache entries (`"winc"`).
const KIND: u32 = u32::from_le_bytes(*b"winc");

/// Default byte budget of the in-memory tier.
const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;

#[derive(Clone)]
struct ByLength;

impl quick_cache::Weighter<CacheKey, Bytes> for ByLength {
    fn weight(&self, _key: &CacheKey, value: &Bytes) -> u64 {
        value.len() as u64 + 64
    }
}

/// Cranelift's incremental compilation cache (per-function results) stored in a [`Tiered`]
/// stack, with an in-memory tier in front.
///
/// Every value is sealed in warmcache's envelope, so a damaged or forged entry is a miss, never
/// input to Cranelift. Use it with [`wasmtime::Config::enable_incremental_compilation`]: when a
/// module changes, only the changed functions are compiled again.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use warmcache_core::Tiered;
/// use warmcache_wasmtime::IncrementalCache;
///
/// let incremental = Arc::new(IncrementalCache::new(Tiered::builder().build()));
/// let mut config = wasmtime::Config::new();
/// config.enable_incremental_compilation(incremental.clone())?;
/// let engine = wasmtime::Engine::new(&config)?;
///
/// let wasm = r#"(module (func (export "f") (result i32) i32.const 1))"#;
/// wasmtime::Module::new(&engine, wasm)?;
/// assert!(incremental.stats().inserts > 0);
/// # Ok::<(), wasmtime::Error>(())
/// ```
pub struct IncrementalCache {
    namespace: Namespace,
    memory: quick_cache::sync::Cache<CacheKey, Bytes, ByLength>,
    tiers: Tiered,
    memory_hits: AtomicU64,
    tier_hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
}

impl std::fmt::Debug for IncrementalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncrementalCache")
            .field("memory_entries", &self.memory.len())
            .field("tiers", &self.tiers)
            .finish_non_exhaustive()
    }
}

/// Counters of an [`IncrementalCache`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IncrementalStats {
    /// Lookups answered by the in-memory tier.
    pub memory_hits: u64,
    /// Lookups answered by a storage tier (verified).
    pub tier_hits: u64,
    /// Lookups nothing could answer: functions Cranelift compiled.
    pub misses: u64,
    /// Results Cranelift stored.
    pub inserts: u64,
    /// Per-tier counters of the storage tiers.
    pub tiers: Vec<TierStats>,
}

impl IncrementalStats {
    /// Lookups answered from any tier: functions Cranelift did not compile again.
    pub fn hits(&self) -> u64 {
        self.memory_hits + self.tier_hits
    }
}

impl IncrementalCache {
    /// A cache over `tiers` with a 64 MiB in-memory tier in front.
    pub fn new(tiers: Tiered) -> Self {
        Self::with_memory(tiers, DEFAULT_MEMORY_BYTES)
    }

    /// A cache over `tiers` with an in-memory tier of `memory_bytes`.
    pub fn with_memory(tiers: Tiered, memory_bytes: u64) -> Self {
        Self {
            namespace: Namespace::new("wasmtime-incremental"),
            memory: quick_cache::sync::Cache::with_weighter(4096, memory_bytes.max(1), ByLength),
            tiers,
            memory_hits: AtomicU64::new(0),
            tier_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> IncrementalStats {
        IncrementalStats {
            memory_hits: self.memory_hits.load(Relaxed),
            tier_hits: self.tier_hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            inserts: self.inserts.load(Relaxed),
            tiers: self.tiers.stats(),
        }
    }

    /// Empties the in-memory tier.
    pub fn clear_memory(&self) {
        self.memory.clear();
    }

    /// Waits for background writes to storage tiers.
    pub fn flush(&self) {
        self.tiers.flush();
    }

    fn key(&self, cranelift_key: &[u8]) -> CacheKey {
        // Cranelift's key covers the function and the compiler settings; the wasmtime version
        // guards against a format change between releases.
        let mut builder = self.namespace.builder();
        builder.str(WASMTIME_VERSION).bytes(cranelift_key);
        builder.finish()
    }
}

impl wasmtime::CacheStore for IncrementalCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let key = self.key(key);
        if let Some(value) = self.memory.get(&key) {
            self.memory_hits.fetch_add(1, Relaxed);
            return Some(Cow::Owned(value.to_vec()));
        }
        match futures::executor::block_on(self.tiers.get(&key)) {
            Some(hit) if hit.opened.meta.kind == KIND => {
                self.tier_hits.fetch_add(1, Relaxed);
                let value = hit.opened.payload;
                self.memory.insert(key, value.clone());
                Some(Cow::Owned(value.to_vec()))
            }
            _ => {
                self.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let key = self.key(key);
        self.inserts.fetch_add(1, Relaxed);
        let value = Bytes::from(value);
        futures::executor::block_on(self.tiers.put(&key, KIND, "cranelift incremental", &value));
        self.memory.insert(key, value);
        true
    }
}
