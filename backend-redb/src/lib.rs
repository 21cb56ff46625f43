//! The embedded default backend of warmcache: one redb file, bounded, persistent.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree store. Every put commits durably (it is on disk
//! when `put` returns), a crash never leaves a torn value, and readers never block writers.
//!
//! # When to choose it
//!
//! For a local, persistent cache with many entries of any size up to tens of MiB, with nothing to
//! install (no C++ toolchain, unlike RocksDB). Values come back as owned bytes, so for very large
//! compiled modules a file-per-entry tier that can be memory-mapped starts faster. Only one
//! process may open the file at a time; processes that share a cache directory need one file each,
//! or the file tier.
//!
//! # Capacity and eviction
//!
//! The sum of stored value lengths stays at or under the capacity: a put that would exceed it first
//! evicts entries in the same transaction, choosing each victim as the lowest ranked of 16
//! entries sampled from a pseudo-random position by the
//! [eviction policy](RedbBackendBuilder::eviction) (as Redis does it; on average the victim ranks
//! below about 94% of entries, and caches of up to 16 entries evict in exact order). Keeping an exact LRU index costs two more B-trees in every durable commit, which
//! measured about 25% slower on 4 KiB puts. The file is larger than the capacity by redb's page
//! overhead and free space.
//!
//! Opening reads the metadata table once to sum the stored bytes (a sequential scan of 48 bytes
//! per entry).
//!
//! Recency is tracked without turning reads into write transactions: a read records its key and a
//! logical tick in memory, and those records are written in one batch with the next put, or every
//! [`touch_batch`](RedbBackendBuilder::touch_batch) reads (default 1024) in one non-durable
//! transaction, or when the backend is dropped. A crash loses at most the recency of the reads
//! since the last batch, never data; eviction order is then slightly less precise.
//!
//! # Errors on open
//!
//! A file held by another process gives [`Error::Locked`](warmcache_core::Error::Locked) naming
//! the path; a damaged or truncated file gives [`Error::Corrupt`](warmcache_core::Error::Corrupt)
//! and is left untouched. [`RedbBackendBuilder::open_or_recreate`] moves an unreadable file aside
//! and starts a new one.
//!
//! # Example
//!
//! ```
//! use warmcache_core::{Backend, CacheKey, bytes::Bytes};
//! use warmcache_redb::RedbBackend;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let redb = RedbBackend::builder(dir.path().join("cache.redb"))
//!     .capacity(512 << 20)
//!     .open()?;
//! let key = CacheKey::from_bytes([7; 32]);
//! futures::executor::block_on(async {
//!     redb.put(&key, Bytes::from_static(b"artifact")).await?;
//!     assert_eq!(redb.get(&key).await?.as_deref(), Some(&b"artifact"[..]));
//!     Ok::<_, warmcache_core::Error>(())
//! })?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod builder;
mod error;
mod store;

pub use backend::RedbBackend;
pub use builder::RedbBackendBuilder;
