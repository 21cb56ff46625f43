//! The live tier: decoded values in memory, bounded by count or by weight.

use crate::key::CacheKey;

/// Weighs live values: by count, or by a caller-supplied function.
struct LiveWeighter<V> {
    weigh: Option<fn(&V) -> u64>,
}

impl<V> Clone for LiveWeighter<V> {
    fn clone(&self) -> Self {
        Self { weigh: self.weigh }
    }
}

impl<V> quick_cache::Weighter<CacheKey, V> for LiveWeighter<V> {
    fn weight(&self, _key: &CacheKey, value: &V) -> u64 {
        // Zero-weight items are never evicted by quick_cache; keep every item evictable.
        self.weigh.map_or(1, |f| f(value).max(1))
    }
}

/// How the live tier is bounded.
#[derive(Clone, Copy)]
pub(super) enum Bound<V> {
    /// At most this many values.
    Count(u64),
    /// At most this total weight, as `weigh` measures each value.
    Weight(u64, fn(&V) -> u64),
}

/// Decoded values in memory.
pub(super) struct Live<V: Clone> {
    cache: quick_cache::sync::Cache<CacheKey, V, LiveWeighter<V>>,
}

impl<V: Clone> Live<V> {
    /// A live tier with `bound`, or `None` when the bound is zero.
    pub(super) fn new(bound: Bound<V>) -> Option<Self> {
        let cache = match bound {
            Bound::Count(0) | Bound::Weight(0, _) => return None,
            Bound::Count(count) => quick_cache::sync::Cache::with_weighter(
                usize::try_from(count).unwrap_or(usize::MAX),
                count,
                LiveWeighter { weigh: None },
            ),
            // One shard, so one value may use the whole budget: quick_cache refuses items
            // larger than a shard's share, and weighted values (compiled modules) vary widely.
            Bound::Weight(capacity, weigh) => {
                let options = quick_cache::OptionsBuilder::new()
                    .estimated_items_capacity(64)
                    .weight_capacity(capacity)
                    .shards(1)
                    .build();
                match options {
                    Ok(options) => quick_cache::sync::Cache::with_options(
                        options,
                        LiveWeighter { weigh: Some(weigh) },
                        Default::default(),
                        Default::default(),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "live tier disabled");
                        return None;
                    }
                }
            }
        };
        Some(Self { cache })
    }

    pub(super) fn get(&self, key: &CacheKey) -> Option<V> {
        self.cache.get(key)
    }

    pub(super) fn insert(&self, key: CacheKey, value: V) {
        self.cache.insert(key, value);
    }

    pub(super) fn remove(&self, key: &CacheKey) {
        self.cache.remove(key);
    }

    pub(super) fn clear(&self) {
        self.cache.clear();
    }

    pub(super) fn len(&self) -> u64 {
        self.cache.len() as u64
    }
}
