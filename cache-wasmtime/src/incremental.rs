//! [`IncrementalCache`]: Cranelift's incremental compilation cache over warmcache tiers.

use std::borrow::Cow;

use bytes::Bytes;
use warmcache_core::{BoxError, Cache, CacheKey, Codec, Entry, Exec, Stats, Tiered};

use crate::key::WASMTIME_VERSION;

/// Default byte budget of the in-memory tier.
const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;

/// Cranelift's per-function results, stored as the bytes Cranelift hands over.
#[derive(Debug, Clone, Copy)]
struct IncrementalCodec;

impl Codec<Bytes> for IncrementalCodec {
    type Caller = ();

    fn kind(&self) -> u32 {
        u32::from_le_bytes(*b"winc")
    }

    fn producer(&self) -> String {
        "cranelift incremental".to_owned()
    }

    fn encode(&self, value: &Bytes) -> Result<Bytes, BoxError> {
        Ok(value.clone())
    }

    fn decode(&self, _caller: &(), entry: &Entry) -> Result<Bytes, BoxError> {
        Ok(entry.to_bytes())
    }
}

fn weigh(value: &Bytes) -> u64 {
    value.len() as u64 + 64
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
    cache: Cache<Bytes, IncrementalCodec>,
}

impl std::fmt::Debug for IncrementalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncrementalCache")
            .field("cache", &self.cache)
            .finish()
    }
}

impl IncrementalCache {
    /// A cache over `tiers` with a 64 MiB in-memory tier in front.
    pub fn new(tiers: Tiered) -> Self {
        Self::with_memory(tiers, DEFAULT_MEMORY_BYTES)
    }

    /// A cache over `tiers` with an in-memory tier of `memory_bytes`.
    pub fn with_memory(tiers: Tiered, memory_bytes: u64) -> Self {
        let cache = Cache::builder("wasmtime-incremental", IncrementalCodec)
            .live_weighted(memory_bytes.max(1), weigh)
            .tiers(tiers)
            .build();
        Self { cache }
    }

    /// Counters so far, in warmcache-core's vocabulary: `live_hits` are lookups the in-memory
    /// tier answered, `tier_hits` those a storage tier answered, `misses` functions Cranelift
    /// compiled, `inserts` results it stored.
    pub fn stats(&self) -> Stats {
        self.cache.stats()
    }

    /// Empties the in-memory tier.
    pub fn clear_memory(&self) {
        self.cache.clear_live();
    }

    /// Waits for background writes to storage tiers.
    pub fn flush(&self) {
        self.cache.flush();
    }

    fn key(&self, cranelift_key: &[u8]) -> CacheKey {
        // Cranelift's key covers the function and the compiler settings; the wasmtime version
        // guards against a format change between releases.
        let mut builder = self.cache.key_builder();
        builder.str(WASMTIME_VERSION).bytes(cranelift_key);
        builder.finish()
    }
}

impl wasmtime::CacheStore for IncrementalCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let key = self.key(key);
        futures::executor::block_on(self.cache.lookup(&(), &key, Exec::Inline))
            .map(|value| Cow::Owned(value.to_vec()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let key = self.key(key);
        futures::executor::block_on(self.cache.insert(key, Bytes::from(value)));
        true
    }
}
