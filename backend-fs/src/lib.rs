//! A warmcache tier that keeps each entry in its own immutable file, so a loader can map it.
//!
//! # Why files
//!
//! A key-value store hands back owned bytes: loading a 67 MB compiled module means reading and
//! copying all of it. Here an entry is a file whose first byte is the payload's first byte
//! (warmcache's envelope puts its metadata and tag *after* the payload), so
//! [`Backend::open_file`](warmcache_core::Backend::open_file) can hand the file to a loader that
//! maps it (wasmtime's `Module::deserialize_open_file`) and pages code in lazily, after the
//! caller verified the envelope over the mapping. Many small entries are better served by redb.
//!
//! # Layout and safety
//!
//! `root/entries/<2 hex>/<64 hex>`, one file per key. A write goes to a unique temporary file in
//! the same directory, is synced, renamed over the entry, and the directory synced: a reader, in
//! this process or another, opens the old file or the new one, never a part; after a crash (even
//! SIGKILL mid-write) no torn entry is visible. A file, once visible, is never modified (only its
//! mtime, see below); eviction unlinks, and on Unix an open or mapped file stays valid after
//! unlink. Several processes may share a directory with no lock held across operations.
//! Temporary files left by a crashed writer are never read and are removed by a later scan (at
//! once when their writer's pid is gone, else after an hour). Nothing that is not of these
//! shapes is ever deleted: other files in the directory are left alone.
//!
//! # Capacity and eviction
//!
//! Least recently used, by file modification time: entries are immutable, so mtime is free to
//! mean "last used", and a read moves it to now at most once per
//! [`touch_interval`](FsBackendBuilder::touch_interval) (one `futimens`, no write
//! transaction). Each process keeps an estimate of the directory's size; when a put takes it
//! over the capacity, a scan measures the real total and deletes the oldest entries down to 90%
//! of the capacity. Within one process the capacity holds after every put; with several
//! processes the directory can exceed it by what the others wrote since their last scan.
//!
//! # Example
//!
//! ```
//! use std::io::Read;
//! use warmcache_core::{Backend, CacheKey, bytes::Bytes};
//! use warmcache_fs::FsBackend;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let fs = FsBackend::builder(dir.path()).capacity(1 << 30).open()?;
//! let key = CacheKey::from_bytes([2; 32]);
//! futures::executor::block_on(async {
//!     fs.put(&key, Bytes::from_static(b"artifact")).await?;
//!     let mut file = fs.open_file(&key).await?.expect("just written");
//!     let mut contents = Vec::new();
//!     file.read_to_end(&mut contents)?;
//!     assert_eq!(contents, b"artifact");
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod builder;
mod layout;
mod store;

pub use backend::FsBackend;
pub use builder::FsBackendBuilder;
