//! A plain map backend for tests, with an optional gate that holds puts until opened.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use warmcache_core::backend::page_from_sorted;
use warmcache_core::bytes::Bytes;
use warmcache_core::{
    Backend, CacheKey, Capabilities, KeyInfo, ListPage, Result, Usage, async_trait,
};

#[derive(Debug, Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    pub fn closed() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
    fn pass(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
}

#[derive(Debug, Default)]
pub struct MapBackend {
    pub map: Mutex<BTreeMap<CacheKey, Bytes>>,
    pub gate: Option<Arc<Gate>>,
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    /// Reports itself as shared with other caches (a bucket).
    pub shared: bool,
}

impl MapBackend {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn gated(gate: Arc<Gate>) -> Arc<Self> {
        Arc::new(Self {
            gate: Some(gate),
            ..Self::default()
        })
    }
    /// A store that says it is shared with other caches, like a bucket.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self {
            shared: true,
            ..Self::default()
        })
    }
    pub fn has(&self, key: &CacheKey) -> bool {
        self.map.lock().unwrap().contains_key(key)
    }
    pub fn raw(&self, key: &CacheKey) -> Option<Bytes> {
        self.map.lock().unwrap().get(key).cloned()
    }
    pub fn set_raw(&self, key: &CacheKey, value: Bytes) {
        self.map.lock().unwrap().insert(*key, value);
    }
}

#[async_trait]
impl Backend for MapBackend {
    fn name(&self) -> &str {
        "map"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new().with_shared(self.shared)
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(self.raw(key))
    }
    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        if let Some(gate) = &self.gate {
            gate.pass();
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.set_raw(key, value);
        Ok(())
    }
    async fn delete(&self, key: &CacheKey) -> Result<()> {
        self.map.lock().unwrap().remove(key);
        Ok(())
    }
    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.has(key))
    }
    async fn clear(&self) -> Result<()> {
        self.map.lock().unwrap().clear();
        Ok(())
    }
    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        let all: Vec<KeyInfo> = self
            .map
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| KeyInfo {
                key: *k,
                size: v.len() as u64,
            })
            .collect();
        Ok(page_from_sorted(&all, after, limit))
    }
    async fn usage(&self) -> Result<Usage> {
        let map = self.map.lock().unwrap();
        Ok(Usage {
            entries: map.len() as u64,
            bytes: map.values().map(|v| v.len() as u64).sum(),
        })
    }
}
