//! The shared remote tier of warmcache: S3 and any other [`object_store`] provider.
//!
//! One [`S3Backend`] stores each entry as one object, `prefix/<2 hex>/<64 hex>` (or
//! `prefix/<namespace>/...` with [`S3BackendBuilder::namespace`]), in a bucket that several hosts
//! share, so a module compiled on one machine is a warm start on every other.
//! The same code serves `s3://` (AWS and S3-compatible servers), `gs://`, `az://`, `file://` and
//! `memory://` URLs, WebDAV servers at `http://` and `https://` URLs, or any
//! `Arc<dyn ObjectStore>` the caller already has.
//!
//! # WebDAV
//!
//! An `http(s)://host/path` URL is a WebDAV server (nginx's dav module with dav-ext for
//! `PROPFIND`, Apache's mod_dav, the protocol of sccache's webdav backend); the URL's path is the
//! prefix. The conformance suite runs against nginx. What differs from a bucket:
//!
//! - **No leases.** WebDAV has no conditional create, so the backend does not coordinate
//!   ([`Capabilities::coordinates`](warmcache_core::Capabilities) is false; asking for it with
//!   [`S3BackendBuilder::coordinates`] is a configuration error): nodes sharing the server each
//!   compile a cold module once, processes on one host still coordinate through its local tiers.
//! - **Whole objects need the server's help.** Each value is one `PUT` (no multipart uploads).
//!   nginx and Apache write it to a temporary file and rename it into place, so readers see the
//!   old value or the new one; a server that writes in place (wsgidav's file provider) lets a
//!   reader see part of a value, which the cache's verification then rejects as corrupt.
//! - **Listed one directory at a time** (`Depth: 1`; nginx refuses `Depth: infinity`): a full
//!   listing is one request per fan-out directory, up to 257, 16 at a time.
//! - A plain `http://` URL is allowed as written; client settings of `object_store`
//!   (`ClientConfigKey`, such as `timeout` or `proxy_url`) go through
//!   [`S3BackendBuilder::option`].
//!
//! # When to choose it
//!
//! As the last tier of a stack (memory, local disk, then this), written in the background with a
//! timeout and, because anyone with write access to the bucket could plant an entry, with a
//! shared secret ([`Integrity::from_secret`](warmcache_core::Integrity::from_secret)) so forged
//! entries are rejected, and namespaced by that secret's
//! [`key_id`](warmcache_core::Integrity::key_id), so nodes whose secrets differ never collide.
//! An object over [`S3BackendBuilder::max_value_size`] is refused from its size alone, before
//! its body is downloaded; a failed multipart upload is aborted, not left to accumulate. Compressing this tier ([`Tier::compression`](warmcache_core::Tier::compression))
//! trades CPU for transfer. Not as the only tier of a latency-sensitive cache: every read is a
//! network round trip.
//!
//! # One compile per fleet
//!
//! The backend offers leases ([`Backend::try_lease`](warmcache_core::Backend::try_lease)): a
//! chain of small objects `prefix/leases/<64 hex>/<generation>`, each created only if absent
//! (`PutMode::Create`, `If-None-Match: *` on S3; GCS, Azure, `file://` and `memory://` support it
//! too), holding who took it and until when. Of the nodes racing for a cold key one compiles;
//! the others poll for its upload; a lease whose holder died expires after its ttl and is taken
//! over. Hosts need clocks that agree to well within the ttl. For an S3-compatible server
//! without conditional creates, turn it off with [`S3BackendBuilder::coordinates`].
//!
//! # Capacity
//!
//! Unbounded from warmcache's side: expiry is the bucket's business. Set a lifecycle rule that
//! expires objects under the prefix some days after creation (for S3, an "Expiration" rule with a
//! prefix filter); entries are immutable, so age since creation is the right measure. `list` and
//! `usage` page through the bucket listing, so `gc` and `stats` can report.
//!
//! # Runtimes
//!
//! object_store needs a Tokio reactor. Each operation is spawned onto a runtime the backend owns
//! (two worker threads) or one given with [`S3BackendBuilder::runtime`], and its handle awaited:
//! the futures work under `futures::executor::block_on`, inside any Tokio runtime, or elsewhere.
//! A dropped future lets its request finish: a put lands whole or not at all.
//!
//! # Example
//!
//! ```
//! use warmcache_core::{Backend, CacheKey, bytes::Bytes};
//! use warmcache_s3::S3Backend;
//!
//! # fn main() -> Result<(), warmcache_core::Error> {
//! // `s3://bucket/prefix` with AWS_* variables, or an S3-compatible endpoint:
//! // S3Backend::builder("s3://builds/wasm").endpoint("http://127.0.0.1:9000").allow_http(true)
//! let remote = S3Backend::builder("memory://").build()?;
//! let key = CacheKey::from_bytes([1; 32]);
//! futures::executor::block_on(async {
//!     remote.put(&key, Bytes::from_static(b"artifact")).await?;
//!     assert!(remote.contains(&key).await?);
//!     Ok(())
//! })
//! # }
//! ```

mod backend;
mod builder;
mod error;
mod layout;
mod lease;

pub use backend::S3Backend;
pub use builder::{DEFAULT_MAX_VALUE_SIZE, S3BackendBuilder, redact};

use std::sync::Arc;
use std::time::Duration;

use warmcache_core::{Compression, Tier};

/// The compression warmcache recommends for remote tiers: zstd level 3.
///
/// Measured on resvg.wasm (4.4 MB, `cargo bench -p warmcache-s3 --bench s3`): level 3 shrinks it
/// 3.57x in 16 ms and restores it in 3.5 ms; level 1 gives 3.23x in 9 ms; level 9 3.88x in 70 ms.
/// A read saves `(4.4 - 1.25) MB / bandwidth` and pays 3.5 ms, so compression wins on any link
/// slower than about 900 MB/s, which is every link to a bucket; uploads run in the background,
/// where 16 ms costs nobody a wait. On loopback (bandwidth nearly free) it costs 1.2 ms per 4.4 MB
/// read instead.
pub const RECOMMENDED_COMPRESSION: Compression = Compression::Zstd { level: 3 };

/// Per-operation timeout of a [`remote_tier`] (a put of `n` bytes also gets the time `n` bytes
/// take at [`Tier::min_write_rate`]): long enough for a bucket's slow tail, short enough that a
/// hanging remote costs a caller seconds, not minutes, before the local tiers or a compile
/// answer.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(5);

/// Background uploads a [`remote_tier`] queues (and at most
/// [`DEFAULT_QUEUE_BYTES`](warmcache_core::DEFAULT_QUEUE_BYTES) of them); past it an upload is
/// dropped and counted, unless the tier waits when full.
pub const REMOTE_QUEUE: usize = 64;

/// A [`Tier`] for `backend` with the settings warmcache uses for a shared remote tier (the CLI
/// too): background writes through a queue of [`REMOTE_QUEUE`], a [`REMOTE_TIMEOUT`] per
/// operation, a circuit breaker that opens after 3 consecutive failures for 30 s, and
/// [`RECOMMENDED_COMPRESSION`].
pub fn remote_tier(backend: Arc<dyn warmcache_core::Backend>) -> Tier {
    Tier::new(backend)
        .name("s3")
        .background(REMOTE_QUEUE)
        .timeout(REMOTE_TIMEOUT)
        .circuit_breaker(3, Duration::from_secs(30))
        .compression(RECOMMENDED_COMPRESSION)
}
