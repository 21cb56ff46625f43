//! Content hashes of input files remembered by the files' identity, so a warm start neither reads
//! nor hashes a wasm file that has not changed (the way git's index avoids re-hashing unchanged
//! files).
//!
//! A record holds a file's identity (device, inode, size, modification and change times), its
//! blake3 content hash, and when it was taken. It is trusted only while the file's identity is
//! unchanged, and only if the file's times are more than [`RACY_WINDOW`] older than the record: a
//! file written in the same moment it was hashed could change again without its times changing
//! (timestamps are coarse on some filesystems), the case git calls "racily clean". Such a record is
//! taken again on the next use, and trusted from then on.
//!
//! What a record cannot see: a change that keeps size, modification and change time (only
//! possible by resetting the system clock, or with privileges to set times and the change time's
//! source) and a filesystem that reuses an inode with identical times. A record that turns out
//! wrong on a miss is caught anyway: the bytes handed to the compiler are hashed and must match.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use warmcache_core::files::{FileIdentity, RACY_WINDOW, RecordDir, now_ns};

use crate::key::ContentHash;

const MAGIC: &str = "warmcache input 1";
/// Records are a few lines; anything larger is not one of ours.
const MAX_RECORD: usize = 512;

/// A directory of remembered input hashes (the CLI keeps it in `inputs/` of its cache
/// directory). A record decides which module runs for a file, so the directory is trusted the
/// way entries are: a [`RecordDir`], checked once and used through its descriptor, whose
/// records are authenticated with its secret.
#[derive(Debug, Clone)]
pub struct InputMemo {
    records: Arc<RecordDir>,
    racy_window: Duration,
}

/// An input file, opened and identified, with its content hash.
#[derive(Debug)]
pub struct Input {
    path: PathBuf,
    file: File,
    hash: ContentHash,
    /// The bytes, when they were read to hash them.
    bytes: Option<Vec<u8>>,
    remembered: bool,
}

fn record_name(identity: &FileIdentity) -> String {
    format!("{:016x}-{:016x}", identity.dev, identity.ino)
}

impl InputMemo {
    /// The memo in `dir`, created (owner-only, with a new secret) if missing.
    ///
    /// # Errors
    ///
    /// When `dir` cannot be created, or is not a directory owned by this user that only it can
    /// write (a symlink or file planted there is refused, not followed), or its secret is not
    /// a private file of this user's (see [`RecordDir::open`]).
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(Self {
            records: Arc::new(RecordDir::open(dir)?),
            racy_window: RACY_WINDOW,
        })
    }

    /// How much older than its record a file's times must be for the record to be trusted
    /// ([`RACY_WINDOW`] by default). Raise it on a filesystem with coarser timestamps, or where
    /// the clock of the machine writing the files differs (a network filesystem).
    pub fn racy_window(mut self, window: Duration) -> Self {
        self.racy_window = window;
        self
    }

    /// Opens `path` and finds its content hash: from the memo when a trusted record matches the
    /// file's identity (the file is then not read), otherwise by reading and hashing it, and
    /// remembering the result.
    ///
    /// # Errors
    ///
    /// When `path` cannot be opened or read.
    pub fn input(&self, path: &Path) -> std::io::Result<Input> {
        let file = File::open(path)?;
        let identity = FileIdentity::of(&file)?;
        if let Some(identity) = identity
            && let Some(hash) = self.recall(&identity)
        {
            return Ok(Input {
                path: path.to_path_buf(),
                file,
                hash,
                bytes: None,
                remembered: true,
            });
        }
        let started = now_ns();
        let input = Input::read(path, file)?;
        // Remember only what was read from an unchanged file.
        if let Some(before) = identity
            && FileIdentity::of(&input.file)? == Some(before)
        {
            self.remember(&before, input.hash, started);
        }
        Ok(input)
    }

    /// Whether a trusted record of `path`'s current identity exists, so [`input`](Self::input)
    /// would not read it. Reads only the file's metadata and the record.
    pub fn remembers(&self, path: &Path) -> bool {
        File::open(path)
            .and_then(|file| FileIdentity::of(&file))
            .ok()
            .flatten()
            .is_some_and(|identity| self.recall(&identity).is_some())
    }

    /// Forgets what is remembered of the open `file` (its record turned out wrong).
    pub fn forget_file(&self, file: &File) {
        if let Ok(Some(identity)) = FileIdentity::of(file) {
            self.records.remove(&record_name(&identity));
        }
    }

    fn recall(&self, identity: &FileIdentity) -> Option<ContentHash> {
        let bytes = self
            .records
            .read(&record_name(identity), MAGIC.as_bytes(), MAX_RECORD)?;
        let text = String::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let numbers: Vec<i128> = lines
            .next()?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [dev, ino, size, mtime_ns, ctime_ns, recorded_ns] = numbers[..] else {
            return None;
        };
        let recorded = FileIdentity {
            dev: u64::try_from(dev).ok()?,
            ino: u64::try_from(ino).ok()?,
            size: u64::try_from(size).ok()?,
            mtime_ns,
            ctime_ns,
        };
        let racy = identity.is_racy(recorded_ns, self.racy_window);
        if recorded != *identity || racy {
            return None;
        }
        let hex = lines.next()?;
        let bytes: [u8; 32] = hex::decode(hex).ok()?.try_into().ok()?;
        Some(ContentHash::from_bytes(bytes))
    }

    fn remember(&self, identity: &FileIdentity, hash: ContentHash, recorded_ns: i128) {
        let text = format!(
            "{MAGIC}\n{} {} {} {} {} {recorded_ns}\n{hash}\n",
            identity.dev, identity.ino, identity.size, identity.mtime_ns, identity.ctime_ns
        );
        let name = record_name(identity);
        if let Err(e) = self.records.write(&name, MAGIC.as_bytes(), text.as_bytes()) {
            tracing::debug!(dir = %self.records.path().display(), name, "could not remember an input hash: {e}");
        }
    }
}

impl Input {
    /// Opens `path` and hashes it, without a memo.
    ///
    /// # Errors
    ///
    /// When `path` cannot be opened or read.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::read(path, File::open(path)?)
    }

    fn read(path: &Path, mut file: File) -> std::io::Result<Self> {
        // A copy, not a mapping: the compiler then sees exactly the bytes that were hashed, even
        // if the file changes meanwhile, and a truncation cannot fault the process.
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            hash: ContentHash::of(&bytes),
            bytes: Some(bytes),
            remembered: false,
        })
    }

    /// The file's content hash.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }

    /// Whether the hash came from the memo (the file was not read).
    pub fn was_remembered(&self) -> bool {
        self.remembered
    }

    /// The path it was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes: those hashed, or, when the hash was remembered, read now from the
    /// file opened then (not from its path, which may name another file by now).
    ///
    /// # Errors
    ///
    /// When the file cannot be read.
    pub fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        if let Some(bytes) = self.bytes {
            return Ok(bytes);
        }
        let mut file = self.file;
        file.seek(SeekFrom::Start(0))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}
