//! The example of the backend author's guide (the `warmcache-conformance` crate docs): a complete
//! bounded in-memory backend, run through the whole suite in two configurations.
//!
//! In a backend crate of your own this file is `tests/conformance.rs`, with the backend itself in
//! `src/`.

// `pub` as it would be in a backend crate; here the file is one module of the test binary.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use warmcache_core::backend::{Limits, page_from_sorted};
use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, CacheKey, Capabilities, KeyInfo, ListPage, Result, Usage};

/// Values in memory, bounded to a byte capacity, evicting the least recently used.
#[derive(Debug)]
pub struct LruMap {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each key's value and the tick of its last use.
    values: BTreeMap<CacheKey, (Bytes, u64)>,
    /// The sum of the values' lengths (what `usage` reports and the capacity bounds).
    bytes: u64,
    /// Counts uses, for recency.
    tick: u64,
}

impl State {
    fn remove(&mut self, key: &CacheKey) -> bool {
        match self.values.remove(key) {
            Some((value, _)) => {
                self.bytes -= value.len() as u64;
                true
            }
            None => false,
        }
    }

    /// Evicts least recently used entries, never `keep`, until at most `max_bytes` remain.
    fn evict_to(&mut self, max_bytes: u64, keep: Option<&CacheKey>) -> u64 {
        let mut evicted = 0;
        while self.bytes > max_bytes {
            let oldest = self
                .values
                .iter()
                .filter(|(k, _)| Some(*k) != keep)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            let Some(oldest) = oldest else { break };
            self.remove(&oldest);
            evicted += 1;
        }
        evicted
    }
}

impl LruMap {
    /// A map holding at most `capacity` bytes of values.
    ///
    /// # Errors
    ///
    /// [`warmcache_core::Error::Config`] for a capacity of 0.
    pub fn new(capacity: u64) -> Result<Self> {
        Ok(Self {
            limits: Limits::new("lru-map", capacity, None, None)?,
            state: Mutex::default(),
        })
    }
}

// `#[warmcache_core::async_trait]` is required on every impl of `Backend`: the trait is declared
// with it, so its async methods return boxed futures (the rendered docs show those signatures).
#[warmcache_core::async_trait]
impl Backend for LruMap {
    fn name(&self) -> &str {
        "lru-map"
    }

    fn capabilities(&self) -> Capabilities {
        // Bounded by the capacity, values up to the largest accepted; volatile, not shared.
        self.limits.capabilities()
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        let mut state = self.state.lock();
        state.tick += 1;
        let tick = state.tick;
        Ok(state.values.get_mut(key).map(|(value, used)| {
            *used = tick;
            value.clone()
        }))
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        // Refuses a value over the largest accepted with `Error::Capacity` naming this backend.
        self.limits.check(self.name(), key, value.len() as u64)?;
        let mut state = self.state.lock();
        state.remove(key);
        state.tick += 1;
        state.bytes += value.len() as u64;
        let tick = state.tick;
        state.values.insert(*key, (value, tick));
        state.evict_to(self.limits.capacity(), Some(key));
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<()> {
        self.state.lock().remove(key);
        Ok(())
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.state.lock().values.contains_key(key))
    }

    async fn clear(&self) -> Result<()> {
        let mut state = self.state.lock();
        state.values.clear();
        state.bytes = 0;
        Ok(())
    }

    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        // A BTreeMap is already in key order; `page_from_sorted` implements the paging contract.
        let all: Vec<KeyInfo> = self
            .state
            .lock()
            .values
            .iter()
            .map(|(key, (value, _))| KeyInfo {
                key: *key,
                size: value.len() as u64,
            })
            .collect();
        Ok(page_from_sorted(&all, after, limit))
    }

    async fn usage(&self) -> Result<Usage> {
        let state = self.state.lock();
        Ok(Usage {
            entries: state.values.len() as u64,
            bytes: state.bytes,
        })
    }

    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        Ok(self.state.lock().evict_to(max_bytes, None))
    }
}

/// The harness: how the suite opens the backend. `capacity` is `None` for the suite's checks
/// (open it the way it is meant to be used) and `Some` for the capacity check, which writes
/// three times the capacity and so asks for a small one.
fn open(_dir: &Path, capacity: Option<u64>) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(LruMap::new(capacity.unwrap_or(64 << 20))?))
}

/// A second configuration: the whole suite at a capacity of 16 KiB, where checks shrink their
/// values and counts to fit.
fn open_small(_dir: &Path, _capacity: Option<u64>) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(LruMap::new(16 << 10)?))
}

warmcache_conformance::backend_tests!(warmcache_conformance::WithCapacity(open));
warmcache_conformance::backend_tests!(small, warmcache_conformance::WithCapacity(open_small));
