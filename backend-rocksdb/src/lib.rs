//! A RocksDB tier for warmcache: an LSM store for large, busy local caches.
//!
//! # When to choose it
//!
//! For a local cache with a high write rate or many entries, where RocksDB's log-structured
//! writes (no B-tree page rewrites, no fsync per put by default) pay off. Large values go to
//! blob files (BlobDB, key-value separation), so compactions move keys and small metadata, not
//! multi-megabyte artifacts. It needs a C++ toolchain and libclang to build, which is why the
//! command line makes it an opt-in feature; redb is the pure-Rust default and the file tier
//! serves whole-module warm starts through mmap.
//!
//! # Durability
//!
//! A put is in the write-ahead log when it returns. By default the log is not fsynced per put:
//! an acknowledged put survives a crash or SIGKILL of the process (the log is in the OS page
//! cache) but not a power loss or kernel crash, which may lose the last writes (never tear them:
//! RocksDB recovers to a consistent prefix). [`RocksDbBackendBuilder::sync_writes`] fsyncs every
//! put for full durability.
//!
//! # Capacity and eviction
//!
//! The sum of value lengths is kept at or under the capacity. Chosen over FIFO compaction
//! (which drops whole files by age, ignores reads, and does not apply to blob files) and over an
//! exact LRU index (a second, ordered record per entry rewritten on every read): a `meta` column
//! family holds each entry's size and last-use tick (16 bytes), updated in the same atomic write
//! batch as the value; reads record recency in memory, written in batches (every 1024 distinct
//! keys, with the next put, or on close). To make room, a put samples 8 consecutive `meta`
//! records from a pseudo-random key and evicts the least recently used, repeating as needed
//! (approximate LRU, as Redis does; the victim is on average older than ~89% of entries).
//! Measured with `cargo bench -p warmcache-rocksdb --bench rocksdb`: the metadata record costs
//! a few percent on a 4 KiB put against a raw `DB::put` (see the benchmark's figures in the
//! project notes).
//!
//! # Example
//!
//! ```
//! use warmcache_core::{Backend, CacheKey, bytes::Bytes};
//! use warmcache_rocksdb::RocksDbBackend;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = RocksDbBackend::builder(dir.path().join("rocks")).capacity(1 << 30).open()?;
//! let key = CacheKey::from_bytes([3; 32]);
//! futures::executor::block_on(async {
//!     db.put(&key, Bytes::from(vec![7u8; 1 << 20])).await?;
//!     assert_eq!(db.get(&key).await?.map(|v| v.len()), Some(1 << 20));
//!     Ok::<_, warmcache_core::Error>(())
//! })?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod builder;
mod error;
mod store;

pub use backend::RocksDbBackend;
pub use builder::{RocksCompression, RocksDbBackendBuilder};
