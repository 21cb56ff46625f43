//! Opening an [`FsBackend`].

use std::path::PathBuf;
use std::time::Duration;

use warmcache_core::Error;
use warmcache_core::backend::{Eviction, Limits};

use crate::backend::FsBackend;
use crate::store::Store;

const DEFAULT_CAPACITY: u64 = 4 << 30;
const DEFAULT_TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// The bound on reading an entry file another user could have written, unless set with
/// [`FsBackendBuilder::foreign_read_limit`]: 256 MiB.
pub const DEFAULT_FOREIGN_READ_LIMIT: u64 = 256 << 20;

/// Opens an [`FsBackend`]. Defaults: 4 GiB capacity, values up to the capacity, a use recorded
/// at most once a minute per entry.
#[derive(Debug, Clone)]
pub struct FsBackendBuilder {
    root: PathBuf,
    capacity: u64,
    max_value_size: Option<u64>,
    touch_interval: Duration,
    name: String,
    offer_files: bool,
    read_only: bool,
    namespace: Option<String>,
    foreign_read_limit: u64,
    eviction: Eviction,
}

impl FsBackendBuilder {
    /// A builder for the cache directory `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            capacity: DEFAULT_CAPACITY,
            max_value_size: None,
            touch_interval: DEFAULT_TOUCH_INTERVAL,
            name: "fs".to_owned(),
            offer_files: true,
            read_only: false,
            namespace: None,
            foreign_read_limit: DEFAULT_FOREIGN_READ_LIMIT,
            eviction: Eviction::default(),
        }
    }

    /// Which entries make room when the capacity is reached (default: [`Eviction`]'s). An
    /// entry's uses (once per [`touch_interval`](Self::touch_interval)) and the inflation at
    /// its last use are kept in its `user.warmcache.use` extended attribute; on a filesystem
    /// without user attributes the tier evicts least recently used entries whatever the
    /// setting.
    pub fn eviction(mut self, policy: Eviction) -> Self {
        self.eviction = policy;
        self
    }

    /// The most bytes read into memory from an entry file that another user could have written
    /// (in a shared directory, read as a copy to verify it), unless this tier wrote a larger
    /// value itself (default [`DEFAULT_FOREIGN_READ_LIMIT`]). A larger file there is refused
    /// unread as [`Error::Corrupt`], so a huge (or sparse) file a co-tenant plants costs no
    /// memory; so is one whose trailer does not declare exactly its size as a warmcache
    /// envelope ([`inspect_trailer`](warmcache_core::inspect_trailer)), read from its end
    /// first. This user's own files are bounded by [`max_value_size`](Self::max_value_size)
    /// only, and may hold any bytes.
    pub fn foreign_read_limit(mut self, bytes: u64) -> Self {
        self.foreign_read_limit = bytes;
        self
    }

    /// Keeps entries in a namespace of their own, `root/keys/<namespace>/`: pass the integrity
    /// mode's [`key_id`](warmcache_core::Integrity::key_id), so that users or nodes whose
    /// secrets differ never see (and never delete or replace) each other's entries in one
    /// directory, as in a bucket. One path segment of ASCII letters, digits, `-` and `_`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The directory the tier keeps its files in: the root, or the namespace's directory in it.
    pub fn dir(&self) -> PathBuf {
        match &self.namespace {
            Some(ns) => self.root.join(crate::layout::KEYS).join(ns),
            None => self.root.clone(),
        }
    }

    /// Whether the backend hands out opened files ([`Capabilities::local_files`]; default
    /// yes). Turn it off to have callers read entries as bytes, for example to measure the
    /// difference a mapping makes.
    ///
    /// [`Capabilities::local_files`]: warmcache_core::Capabilities::local_files
    pub fn offer_files(mut self, offer: bool) -> Self {
        self.offer_files = offer;
        self
    }

    /// The byte capacity (sum of entry file sizes). A put that takes this process's view of the
    /// directory over it runs an eviction pass down to 90% of it.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// The largest value accepted (default: the capacity).
    pub fn max_value_size(mut self, bytes: u64) -> Self {
        self.max_value_size = Some(bytes);
        self
    }

    /// Records a read of an entry (by moving its mtime) at most once per `interval`
    /// (default 60 s). Shorter means more precise eviction and more metadata writes.
    pub fn touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// Opens the directory only to read it (default no): a prebuilt cache shipped in an image,
    /// or one this user may not write. Nothing in it is created, changed or removed, not even a
    /// use recorded; `put`, `delete`, `clear`, `shrink_to` and `try_lease` answer
    /// [`Error::NotSupported`]. The directory must exist with its `entries/`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The name used in errors and stats (default `"fs"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Opens (or creates) the directory and measures what it holds.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for invalid options; [`Error::Io`] naming the path when the directory
    /// cannot be created, read or written (for example without write permission).
    pub fn open(self) -> Result<FsBackend, Error> {
        let limits = Limits::new(&self.name, self.capacity, self.max_value_size, None)?;
        let mut outer = Vec::new();
        if let Some(ns) = &self.namespace {
            if !warmcache_core::is_namespace(ns) {
                return Err(Error::config(
                    warmcache_core::Context::new(self.name.clone(), warmcache_core::Op::Open),
                    format!(
                        "namespace {ns:?} must be one path segment of ASCII letters, digits, \
                         `-` and `_`"
                    ),
                ));
            }
            // Whoever can change these can swap the namespace's directory.
            outer = vec![self.root.clone(), self.root.join(crate::layout::KEYS)];
        }
        let store = Store::open(
            self.dir(),
            outer,
            self.name,
            limits,
            self.touch_interval,
            self.read_only,
            self.foreign_read_limit,
        )?
        .evicting_by(self.eviction);
        Ok(FsBackend::from_store(store, self.offer_files))
    }
}
