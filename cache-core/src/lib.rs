//! The core of warmcache: keys, the storage contract, integrity, tiers and the cache front.
//!
//! * [`KeyBuilder`] derives a [`CacheKey`] from typed, framed fields in blake3's `derive_key`
//!   mode. The same inputs give the same key on every host.
//! * [`Backend`] is the one trait a storage backend implements; `warmcache-conformance` checks it.
//! * [`Integrity`] wraps every stored value in an envelope with a blake3 tag, or a keyed MAC when
//!   a secret is configured, and verifies it before a byte reaches a decoder.
//! * [`Tiered`] composes backends fastest first, with promotion, background writes, timeouts and
//!   circuit breakers; a failing tier is a miss, never an error.
//! * [`Cache`] puts a live tier of decoded values and per-key single-flight in front; with
//!   tiers that offer leases ([`backend::Lease`]), processes and hosts sharing them compute a
//!   cold key once between them ([`Coordination`]).
//! * Every counter of [`Stats`] and [`TierStats`] is also emitted through the `metrics` facade
//!   ([`metrics`] lists the names).
//!
//! This crate depends on no backend and on no WebAssembly runtime.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use warmcache_core::{Backend, BytesCodec, Cache, Tier, Tiered};
//! # use warmcache_core::{CacheKey, Capabilities, ListPage, Usage, Result, KeyInfo};
//! # use warmcache_core::backend::page_from_sorted;
//! # #[derive(Debug, Default)]
//! # struct MapBackend(std::sync::Mutex<std::collections::BTreeMap<CacheKey, Bytes>>);
//! # #[async_trait::async_trait]
//! # impl Backend for MapBackend {
//! #     fn name(&self) -> &str { "map" }
//! #     fn capabilities(&self) -> Capabilities { Capabilities::new() }
//! #     async fn get(&self, k: &CacheKey) -> Result<Option<Bytes>> { Ok(self.0.lock().unwrap().get(k).cloned()) }
//! #     async fn put(&self, k: &CacheKey, v: Bytes) -> Result<()> { self.0.lock().unwrap().insert(*k, v); Ok(()) }
//! #     async fn delete(&self, k: &CacheKey) -> Result<()> { self.0.lock().unwrap().remove(k); Ok(()) }
//! #     async fn contains(&self, k: &CacheKey) -> Result<bool> { Ok(self.0.lock().unwrap().contains_key(k)) }
//! #     async fn clear(&self) -> Result<()> { self.0.lock().unwrap().clear(); Ok(()) }
//! #     async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
//! #         let all: Vec<KeyInfo> = self.0.lock().unwrap().iter().map(|(k, v)| KeyInfo { key: *k, size: v.len() as u64 }).collect();
//! #         Ok(page_from_sorted(&all, after, limit))
//! #     }
//! #     async fn usage(&self) -> Result<Usage> { let m = self.0.lock().unwrap(); Ok(Usage { entries: m.len() as u64, bytes: m.values().map(|v| v.len() as u64).sum() }) }
//! # }
//!
//! fn render(page: &str) -> Result<Bytes, std::io::Error> {
//!     Ok(Bytes::from(format!("<h1>{page}</h1>")))
//! }
//!
//! // Any Backend: warmcache-memory, warmcache-redb, or your own.
//! let disk: Arc<dyn Backend> = Arc::new(MapBackend::default());
//! let tiers = Tiered::builder().tier(Tier::new(disk)).build();
//! let cache = Cache::builder("pages", BytesCodec).tiers(tiers).build();
//!
//! let first = cache.get_or_compute("home", render)?;
//! cache.clear_live();
//! let again = cache.get_or_compute("home", render)?; // verified read from the tier
//! assert_eq!(first, again);
//! assert_eq!(cache.stats().computes, 1);
//! assert_eq!(cache.stats().tier_hits, 1);
//! # Ok::<(), warmcache_core::ComputeError>(())
//! ```

pub mod backend;
mod breaker;
mod cache;
mod codec;
mod entry;
mod envelope;
mod error;
pub mod files;
mod key;
mod mapped;
pub mod metrics;
pub mod signing;
mod single_flight;
mod stats;
mod sync;
mod tiered;

pub use backend::{Backend, BackendExt, Capabilities, KeyInfo, ListPage, Usage};
pub use cache::{Cache, CacheBuilder, ComputeError, Exec, FAILURE_KIND, Failure, Produced};
pub use codec::{BytesCodec, Codec, PostcardCodec};
pub use entry::Entry;
pub use envelope::{
    Compression, EnvelopeMeta, FORMAT_VERSION, Integrity, MAX_INPUTS_LEN, MAX_PRODUCER_LEN,
    MAX_TRAILER_LEN, MIN_SECRET_LEN, Origin, Trust, VerifyError, WeakSecret, inspect,
    inspect_trailer, is_namespace,
};
pub use error::{BoxError, Context, Error, ErrorKind, Op, Result};
pub use files::VerifiedFiles;
pub use key::{
    CacheKey, CanonicalHasher, KEY_SCHEMA_VERSION, KeyBuilder, KeyInt, Namespace, ParseKeyError,
};
pub use signing::{KeyError, PublicKey, SigningKey};
pub use stats::{Counter, Stats, TierStats};
pub use tiered::{
    Access, Coordination, DEFAULT_MIN_WRITE_RATE, DEFAULT_QUEUE_BYTES, OnSharedMiss, Tier, Tiered,
    TieredBuilder, WhenFull,
};

/// Moved to [`backend::page_from_sorted`]; kept here for one release.
#[deprecated(note = "moved: use `warmcache_core::backend::page_from_sorted`")]
pub fn page_from_sorted(sorted: &[KeyInfo], after: Option<CacheKey>, limit: usize) -> ListPage {
    backend::page_from_sorted(sorted, after, limit)
}

/// Moved to [`backend::maybe_spawn_blocking`]; kept here for one release.
#[deprecated(note = "moved: use `warmcache_core::backend::maybe_spawn_blocking`")]
pub async fn maybe_spawn_blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    backend::maybe_spawn_blocking(f).await
}

/// Re-exported so backend authors implement [`Backend`] with the same `async_trait` version.
pub use async_trait::async_trait;
/// Re-exported: values are [`bytes::Bytes`].
pub use bytes;
