//! A bounded, byte-weighted, concurrent in-memory [`Backend`](warmcache_core::Backend) for warmcache.
//!
//! Built on [`quick_cache`], chosen over `moka` because it is synchronous and small (no background
//! threads, no async runtime), its S3-FIFO-style eviction keeps hot entries under scans, and its
//! weight accounting is exact per shard, which lets this backend *guarantee* the byte bound instead
//! of approximating it. `moka` evicts asynchronously (its size may briefly exceed the bound until
//! pending tasks run), which would break the capacity contract.
//!
//! # When to use it
//!
//! As the first tier of a stack, in front of a disk or remote tier, for encoded entries that are
//! read again within a process's life. It is not persistent and not shared. Decoded values are
//! already kept by the cache front's live tier; this tier holds bytes, for example to serve
//! several engines or to avoid re-reading a slow tier.
//!
//! # Capacity
//!
//! Each entry weighs its value length plus [`ENTRY_OVERHEAD`] bytes; the total weight never
//! exceeds the configured capacity. The cache is split into shards (each a fraction of the
//! capacity), so the largest accepted value is bounded by a shard's size: the builder picks the
//! shard count from [`MemoryBackendBuilder::max_value_size`], and larger values are refused with
//! [`Error::Capacity`](warmcache_core::Error::Capacity).
//!
//! # Example
//!
//! ```
//! use warmcache_core::{Backend, CacheKey, bytes::Bytes};
//! use warmcache_memory::MemoryBackend;
//!
//! # futures::executor::block_on(async {
//! let memory = MemoryBackend::builder().capacity(64 << 20).build()?;
//! let key = CacheKey::from_bytes([1; 32]);
//! memory.put(&key, Bytes::from_static(b"compiled")).await?;
//! assert_eq!(memory.get(&key).await?.as_deref(), Some(&b"compiled"[..]));
//! # Ok::<(), warmcache_core::Error>(())
//! # }).unwrap();
//! ```

mod backend;
mod builder;

pub use backend::{ENTRY_OVERHEAD, MemoryBackend};
pub use builder::MemoryBackendBuilder;
