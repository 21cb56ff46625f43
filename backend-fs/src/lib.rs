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
//! A writer holds a lock on its temporary file until it is done; temporary files left by a
//! crashed writer are never read, and a later scan removes one only when nobody holds its lock
//! (which works across PID namespaces and hosts, unlike a pid). Nothing that is not of these
//! shapes is ever deleted: other files in the directory are left alone. A new directory is
//! synced in its parent before an entry in it is acknowledged.
//!
//! # One compile per machine
//!
//! The tier offers leases ([`Backend::try_lease`](warmcache_core::Backend::try_lease)): an
//! exclusive lock on `root/locks/<64 hex>`, one per key, so processes sharing the directory
//! compile a cold key once between them while the others wait for its entry. The kernel frees a
//! lock when its holder dies, so a killed compiler never strands its waiters; the holder removes
//! the file on release without a race (see `docs/DESIGN.md`).
//!
//! # A directory shared with others
//!
//! The directory may be writable by co-tenants (a group-writable `/var/cache`, a CI runner's
//! volume, a volume mounted into several containers), so no name in it is trusted: entries are
//! opened without following symbolic links and without blocking (a FIFO or device is refused,
//! never read), reads stop at the largest value the tier stores, files are created exclusively
//! with mode `0644` whatever the umask (a planted link is never written through), and scans,
//! eviction and `clear` never descend through a linked fan-out directory.
//!
//! A mapping shares pages with its file, so whoever can write the file could change mapped
//! code after it was verified. [`open_file`](warmcache_core::Backend::open_file) therefore hands
//! out only a regular file owned by this process's user, without group or other write
//! permission and with a single link; any other entry answers
//! [`Error::NotSupported`](warmcache_core::Error::NotSupported), and the tier stack reads a
//! verified copy into memory instead. Whoever runs as the same user is trusted, as with any file
//! the process uses.
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
mod files;
mod layout;
mod lock;
mod store;
mod worth;

pub use backend::FsBackend;
pub use builder::{DEFAULT_FOREIGN_READ_LIMIT, FsBackendBuilder};
