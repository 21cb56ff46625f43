//! Configuration of [`MemoryBackend`].

use warmcache_core::backend::Limits;
use warmcache_core::{Context, Error, Op};

use crate::backend::{ENTRY_OVERHEAD, HOT_ALLOCATION, MemoryBackend};

/// Default capacity: 256 MiB.
const DEFAULT_CAPACITY: u64 = 256 << 20;
/// Default largest value when no capacity fraction is smaller: 64 MiB.
const DEFAULT_MAX_VALUE: u64 = 64 << 20;
const MAX_SHARDS: u64 = 64;

/// Builds a [`MemoryBackend`]. Defaults: 256 MiB capacity, values up to 64 MiB (or a quarter of
/// the capacity, whichever is larger, within the capacity).
#[derive(Debug, Clone, Default)]
pub struct MemoryBackendBuilder {
    capacity: Option<u64>,
    max_value_size: Option<u64>,
    name: Option<String>,
}

impl MemoryBackendBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The byte capacity (values plus [`ENTRY_OVERHEAD`] per entry).
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = Some(bytes);
        self
    }

    /// The largest value accepted. Larger maxima mean fewer shards (more lock contention).
    pub fn max_value_size(mut self, bytes: u64) -> Self {
        self.max_value_size = Some(bytes);
        self
    }

    /// The name used in errors and stats (default `"memory"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates the configuration and builds the backend.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the capacity is zero or cannot hold a value of `max_value_size`.
    pub fn build(self) -> Result<MemoryBackend, Error> {
        let name = self.name.unwrap_or_else(|| "memory".to_owned());
        let context = || Context::new(name.clone(), Op::Open);
        let capacity = self.capacity.unwrap_or(DEFAULT_CAPACITY);
        // What one shard holding the whole capacity could accept.
        let largest_possible = hot_limit(capacity).saturating_sub(ENTRY_OVERHEAD);
        if largest_possible == 0 {
            return Err(Error::config(
                context(),
                format!("capacity of {capacity} bytes is too small to hold any entry"),
            ));
        }
        let default_max = DEFAULT_MAX_VALUE.max(capacity / 4).min(largest_possible);
        let limits = Limits::new(
            &name,
            capacity,
            Some(self.max_value_size.unwrap_or(default_max)),
            Some(largest_possible),
        )?;
        let max_value = limits.max_value();
        // As many shards as keep a shard's hot area above the largest value, a power of two.
        let mut shards = 1u64;
        while shards < MAX_SHARDS
            && hot_limit(capacity / (shards * 2)) >= max_value + ENTRY_OVERHEAD
        {
            shards *= 2;
        }
        // A multiple of the shard count, so no shard rounds up past the total.
        let capacity = capacity / shards * shards;
        let limits = Limits::new(&name, capacity, Some(max_value), None)?;
        Ok(MemoryBackend::new(name, limits, shards as usize))
    }
}

/// The largest item weight quick_cache admits into a shard of `shard_capacity`.
fn hot_limit(shard_capacity: u64) -> u64 {
    (shard_capacity as f64 * HOT_ALLOCATION) as u64
}
