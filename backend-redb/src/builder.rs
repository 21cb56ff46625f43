//! Opening a [`RedbBackend`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warmcache_core::backend::{Eviction, Limits, guard_panics};
use warmcache_core::{Context, Error, ErrorKind, Op};

use crate::backend::RedbBackend;
use crate::error::{MAX_REDB_VALUE, map};
use crate::store::Store;

/// Default capacity: 1 GiB of values.
const DEFAULT_CAPACITY: u64 = 1 << 30;
/// Reads whose recency is kept in memory before it is written.
const DEFAULT_TOUCH_BATCH: usize = 1024;

/// Opens a [`RedbBackend`] at a path. Defaults: 1 GiB capacity, values up to the capacity (at most
/// 3 GiB, redb's limit), read recency written every 1024 reads, [`Eviction`]'s default policy.
#[derive(Debug, Clone)]
pub struct RedbBackendBuilder {
    path: PathBuf,
    capacity: u64,
    max_value_size: Option<u64>,
    touch_batch: usize,
    eviction: Eviction,
    cache_size: Option<usize>,
    name: String,
}

impl RedbBackendBuilder {
    /// A builder for the database file at `path` (created if missing, with its parent directory).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            capacity: DEFAULT_CAPACITY,
            max_value_size: None,
            touch_batch: DEFAULT_TOUCH_BATCH,
            eviction: Eviction::default(),
            cache_size: None,
            name: "redb".to_owned(),
        }
    }

    /// The byte capacity: the sum of stored value lengths is kept at or under it by evicting
    /// entries ([`eviction`](Self::eviction) chooses which). The file itself is larger (pages, B-tree nodes, free space).
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// The largest value accepted (default: the capacity, at most 3 GiB).
    pub fn max_value_size(mut self, bytes: u64) -> Self {
        self.max_value_size = Some(bytes);
        self
    }

    /// How many reads are remembered in memory before their recency is written (default 1024).
    /// Lower means more precise eviction and more write transactions.
    pub fn touch_batch(mut self, reads: usize) -> Self {
        self.touch_batch = reads;
        self
    }

    /// Which entries make room when the capacity is reached (default: [`Eviction`]'s).
    pub fn eviction(mut self, policy: Eviction) -> Self {
        self.eviction = policy;
        self
    }

    /// redb's page cache size in bytes (redb's default when unset).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = Some(bytes);
        self
    }

    /// The name used in errors and stats (default `"redb"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    fn ctx(&self) -> Context {
        Context::new(self.name.clone(), Op::Open)
    }

    /// Opens (or creates) the database.
    ///
    /// # Errors
    ///
    /// * [`Error::Locked`] when another process (or handle) has the file open; the message names
    ///   the path.
    /// * [`Error::Corrupt`] when the file is damaged, truncated or not a redb database; the file
    ///   is left as it is. Use [`open_or_recreate`](Self::open_or_recreate) to start over.
    /// * [`Error::Config`] for invalid options, [`Error::Io`] for file-system errors.
    pub fn open(self) -> Result<RedbBackend, Error> {
        let limits = Limits::new(
            &self.name,
            self.capacity,
            self.max_value_size,
            Some(MAX_REDB_VALUE),
        )?;
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            warmcache_core::files::create_cache_dir_all(parent)
                .map_err(|e| Error::io(self.ctx(), e))?;
        }
        let mut builder = redb::Builder::new();
        if let Some(size) = self.cache_size {
            builder.set_cache_size(size);
        }
        let file = open_database_file(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => Error::config(self.ctx(), e.to_string()),
            _ => Error::io(self.ctx(), e),
        })?;
        // A panic from a damaged file becomes an error, not an abort (and prints nothing).
        let db = guard_panics(
            || self.ctx(),
            &format!("the cache database {}", self.path.display()),
            || {
                builder
                    .create_file(file)
                    .map_err(|e| map(e, self.ctx(), &self.path))
            },
        )?;
        // Opening reads the metadata table, which a damaged page can make redb panic on too.
        let store = guard_panics(
            || self.ctx(),
            &self.path.display().to_string(),
            || {
                Store::open(
                    db,
                    self.path.clone(),
                    self.name.clone(),
                    limits,
                    self.touch_batch,
                    self.eviction,
                )
            },
        )?;
        tracing::debug!(path = %self.path.display(), capacity = self.capacity, "opened redb cache");
        Ok(RedbBackend {
            store: Arc::new(store),
        })
    }

    /// Opens the database, and when it is corrupt or unreadable, moves it aside to
    /// `<path>.corrupt` (replacing an older one) and creates a new, empty one.
    ///
    /// A cache is disposable, so this is what a long-running service or the command line wants.
    /// A locked file is never recreated: that error is returned as from [`open`](Self::open).
    pub fn open_or_recreate(self) -> Result<RedbBackend, Error> {
        match self.clone().open() {
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                let aside = aside_path(&self.path);
                tracing::warn!(
                    path = %self.path.display(),
                    moved_to = %aside.display(),
                    error = %e,
                    "cache database unreadable; starting a new one"
                );
                std::fs::rename(&self.path, &aside).map_err(|e| Error::io(self.ctx(), e))?;
                self.open()
            }
            other => other,
        }
    }
}

fn aside_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".corrupt");
    path.with_file_name(name)
}

/// Opens (creating, never truncating) the database file: not through a symbolic link (a planted
/// `cache.redb` link would make redb create or write a file of someone else's choosing), only a
/// regular file, and not one with a second name (a planted hard link to another file).
/// [`std::io::ErrorKind::InvalidInput`] names what is there instead.
fn open_database_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let refuse = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is {what}, not a cache database; refusing to open it (remove it)",
                path.display()
            ),
        )
    };
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return refuse("a symbolic link".to_owned());
        }
        e
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".to_owned()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() != 1 {
            return Err(refuse(format!(
                "a file with {} names (hard links)",
                meta.nlink()
            )));
        }
    }
    Ok(file)
}
