//! [`MemoryBackend`]: the store itself.

use std::collections::BTreeMap;

use bytes::Bytes;
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter, sync::DefaultLifecycle};
use warmcache_core::backend::{Limits, page_from_sorted};
use warmcache_core::{
    Backend, CacheKey, Capabilities, KeyInfo, ListPage, Result, Usage, async_trait,
};

use crate::builder::MemoryBackendBuilder;

/// Bytes counted against the capacity for each entry on top of its value: the key and the
/// store's bookkeeping, roughly.
pub const ENTRY_OVERHEAD: u64 = 64;
pub(crate) const HOT_ALLOCATION: f64 = 0.97;

#[derive(Debug, Clone, Copy)]
struct ByteWeighter;

impl Weighter<CacheKey, Bytes> for ByteWeighter {
    fn weight(&self, _key: &CacheKey, value: &Bytes) -> u64 {
        value.len() as u64 + ENTRY_OVERHEAD
    }
}

type Store = quick_cache::sync::Cache<
    CacheKey,
    Bytes,
    ByteWeighter,
    DefaultHashBuilder,
    DefaultLifecycle<CacheKey, Bytes>,
>;

/// A bounded in-memory store. See the [crate docs](crate).
#[derive(Debug)]
pub struct MemoryBackend {
    name: String,
    store: Store,
    limits: Limits,
}

impl MemoryBackend {
    /// Starts a [`MemoryBackendBuilder`].
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder::new()
    }

    /// A backend holding up to `capacity` bytes, with the other defaults.
    ///
    /// # Errors
    ///
    /// See [`MemoryBackendBuilder::build`].
    pub fn with_capacity(capacity: u64) -> Result<Self> {
        Self::builder().capacity(capacity).build()
    }

    pub(crate) fn new(name: String, limits: Limits, shards: usize) -> Self {
        let capacity = limits.capacity();
        let mut options = OptionsBuilder::new();
        options
            .shards(shards)
            .weight_capacity(capacity)
            .hot_allocation(HOT_ALLOCATION)
            // A guess at entry count for ghost tracking; precision matters little.
            .estimated_items_capacity(
                usize::try_from((capacity / 4096).max(256)).unwrap_or(256) * shards,
            );
        let store = match options.build() {
            Ok(options) => Store::with_options(
                options,
                ByteWeighter,
                DefaultHashBuilder::default(),
                DefaultLifecycle::default(),
            ),
            // Unreachable with the values above; fall back to quick_cache's own defaults.
            Err(_) => Store::with(
                1024,
                capacity,
                ByteWeighter,
                Default::default(),
                Default::default(),
            ),
        };
        Self {
            name,
            store,
            limits,
        }
    }

    /// The byte capacity.
    pub fn capacity(&self) -> u64 {
        self.limits.capacity()
    }

    /// The largest value accepted.
    pub fn max_value_size(&self) -> u64 {
        self.limits.max_value()
    }

    fn snapshot(&self) -> BTreeMap<CacheKey, u64> {
        self.store
            .iter()
            .map(|(k, v)| (k, v.len() as u64))
            .collect()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.limits.capabilities()
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        Ok(self.store.get(key))
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        self.limits.check(&self.name, key, value.len() as u64)?;
        self.store.insert(*key, value);
        Ok(())
    }

    async fn delete(&self, key: &CacheKey) -> Result<()> {
        self.store.remove(key);
        Ok(())
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.store.contains_key(key))
    }

    async fn clear(&self) -> Result<()> {
        self.store.clear();
        Ok(())
    }

    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        let all: Vec<KeyInfo> = self
            .snapshot()
            .into_iter()
            .map(|(key, size)| KeyInfo { key, size })
            .collect();
        Ok(page_from_sorted(&all, after, limit))
    }

    async fn usage(&self) -> Result<Usage> {
        // Sum over one pass so entries and bytes agree with each other.
        let (entries, bytes) = self
            .store
            .iter()
            .fold((0u64, 0u64), |(n, b), (_, v)| (n + 1, b + v.len() as u64));
        Ok(Usage { entries, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        assert!(MemoryBackend::builder().capacity(10).build().is_err());
        assert!(
            MemoryBackend::builder()
                .capacity(1 << 20)
                .max_value_size(2 << 20)
                .build()
                .is_err()
        );
        let b = MemoryBackend::builder()
            .capacity(1 << 30)
            .max_value_size(1 << 20)
            .build()
            .unwrap();
        assert_eq!(b.max_value_size(), 1 << 20);
        assert!(b.store.num_shards() > 1);
        assert!(b.store.capacity() <= 1 << 30);
    }

    #[test]
    fn largest_allowed_value_is_admitted() {
        for capacity in [4096u64, 1 << 20, 100 << 20, 1 << 30] {
            let b = MemoryBackend::builder().capacity(capacity).build().unwrap();
            let key = CacheKey::from_bytes([3; 32]);
            let value = Bytes::from(vec![7u8; b.max_value_size() as usize]);
            futures::executor::block_on(b.put(&key, value)).unwrap();
            assert!(
                futures::executor::block_on(b.contains(&key)).unwrap(),
                "capacity {capacity}: a value of max_value_size was silently dropped"
            );
            let too_big = Bytes::from(vec![7u8; b.max_value_size() as usize + 1]);
            let err = futures::executor::block_on(b.put(&key, too_big)).unwrap_err();
            assert!(err.to_string().contains("exceeds the limit"), "{err}");
        }
    }
}
