//! Opening a [`RocksDbBackend`].

use std::path::PathBuf;

use rocksdb::{ColumnFamilyDescriptor, DB, DBCompressionType, Options};
use warmcache_core::{Context, Error, Op};

use crate::backend::RocksDbBackend;
use crate::error::map;
use crate::store::{META, Settings, Store};
use warmcache_core::backend::{Eviction, Limits};

/// Compression of stored values (SST files and blob files alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RocksCompression {
    /// None: compiled artifacts are often already dense, and reads stay cheapest.
    None,
    /// LZ4: fast, modest ratio. The default.
    #[default]
    Lz4,
    /// Zstandard: a better ratio for more CPU.
    Zstd,
}

impl RocksCompression {
    fn to_rocks(self) -> DBCompressionType {
        match self {
            RocksCompression::None => DBCompressionType::None,
            RocksCompression::Lz4 => DBCompressionType::Lz4,
            RocksCompression::Zstd => DBCompressionType::Zstd,
        }
    }
}

/// Opens a [`RocksDbBackend`]. Defaults: 4 GiB capacity, values of 64 KiB and more in blob files,
/// LZ4, no fsync per put, read recency written every 1024 reads.
#[derive(Debug, Clone)]
pub struct RocksDbBackendBuilder {
    path: PathBuf,
    capacity: u64,
    max_value_size: Option<u64>,
    blob_threshold: u64,
    compression: RocksCompression,
    sync_writes: bool,
    read_only: bool,
    touch_batch: usize,
    eviction: Eviction,
    name: String,
}

impl RocksDbBackendBuilder {
    /// A builder for the database directory `path` (created if missing).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            capacity: 4 << 30,
            max_value_size: None,
            blob_threshold: 64 << 10,
            compression: RocksCompression::default(),
            sync_writes: false,
            read_only: false,
            touch_batch: 1024,
            eviction: Eviction::default(),
            name: "rocksdb".to_owned(),
        }
    }

    /// The byte capacity: the sum of stored value lengths, kept by evicting entries (sampled;
    /// [`eviction`](Self::eviction) chooses which). Files on disk differ by compression, LSM space amplification and blob
    /// garbage not yet collected.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }

    /// The largest value accepted (default: the capacity).
    pub fn max_value_size(mut self, bytes: u64) -> Self {
        self.max_value_size = Some(bytes);
        self
    }

    /// Values of at least this many bytes are kept in blob files, outside the LSM tree, so
    /// compactions do not rewrite them (default 64 KiB).
    pub fn blob_threshold(mut self, bytes: u64) -> Self {
        self.blob_threshold = bytes;
        self
    }

    /// Compression of values (default LZ4).
    pub fn compression(mut self, compression: RocksCompression) -> Self {
        self.compression = compression;
        self
    }

    /// Fsync the write-ahead log on every put (default off). Off, an acknowledged put survives a
    /// crash of the process but not of the machine; on, it survives both, at the cost of an
    /// fsync per put.
    pub fn sync_writes(mut self, sync: bool) -> Self {
        self.sync_writes = sync;
        self
    }

    /// Opens without taking the lock, for reading a database another process has open. Writes
    /// fail with [`Error::NotSupported`].
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How many reads are remembered in memory before their recency is written (default 1024).
    pub fn touch_batch(mut self, reads: usize) -> Self {
        self.touch_batch = reads;
        self
    }

    /// Which entries make room when the capacity is reached (default: [`Eviction`]'s).
    pub fn eviction(mut self, policy: Eviction) -> Self {
        self.eviction = policy;
        self
    }

    /// The name used in errors and stats (default `"rocksdb"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Opens (or creates) the database.
    ///
    /// # Errors
    ///
    /// * [`Error::Locked`] naming the path when another process has it open (open it
    ///   [`read_only`](Self::read_only) instead, or use another directory);
    /// * [`Error::Corrupt`] for a damaged directory or one that is not a RocksDB database;
    /// * [`Error::Config`] for invalid options, [`Error::Io`] naming the path otherwise.
    pub fn open(self) -> Result<RocksDbBackend, Error> {
        let ctx = || Context::new(self.name.clone(), Op::Open);
        let limits = Limits::new(&self.name, self.capacity, self.max_value_size, None)?;
        if self.path.is_file() {
            return Err(Error::Corrupt {
                context: ctx(),
                detail: format!(
                    "{} is a file, not a RocksDB database directory",
                    self.path.display()
                ),
                source: None,
            });
        }
        let mut values = Options::default();
        values.set_compression_type(self.compression.to_rocks());
        values.set_enable_blob_files(true);
        values.set_min_blob_size(self.blob_threshold);
        values.set_blob_compression_type(self.compression.to_rocks());
        values.set_enable_blob_gc(true);
        let mut meta = Options::default();
        meta.set_compression_type(DBCompressionType::None);
        let mut db_opts = values.clone();
        db_opts.create_if_missing(!self.read_only);
        db_opts.create_missing_column_families(!self.read_only);
        let cfs = [
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, values),
            ColumnFamilyDescriptor::new(META, meta),
        ];
        let db = if self.read_only {
            DB::open_cf_descriptors_read_only(&db_opts, &self.path, cfs, false)
        } else {
            DB::open_cf_descriptors(&db_opts, &self.path, cfs)
        }
        .map_err(|e| map(e, ctx(), &self.path))?;
        let store = Store::new(
            db,
            self.path.clone(),
            Settings {
                name: self.name.clone(),
                limits,
                read_only: self.read_only,
                sync: self.sync_writes,
                touch_batch: self.touch_batch,
                eviction: self.eviction,
            },
        )?;
        Ok(RocksDbBackend {
            store: std::sync::Arc::new(store),
        })
    }
}
