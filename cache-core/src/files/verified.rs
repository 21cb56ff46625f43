//! "Verified since last change": an opt-in mode of local file tiers in which an entry file that
//! verified once is not hashed again on later loads while its identity is unchanged.
//!
//! After a file verifies in full, a record is written: a keyed MAC, under a secret kept in the
//! records directory with owner-only permissions, over the entry's key and the file's identity
//! (device, inode, size, modification and change times). A later load whose file has the same
//! identity, with a record that authenticates, checks the envelope's structure, key and kind but
//! skips hashing the body.
//!
//! What this gives up: damage to a file's data that changes none of its metadata (a media error,
//! a bug below the filesystem, a write to the block device) goes undetected until a full check
//! (`warmcache verify`). What it keeps: any write through the filesystem changes the change time,
//! so the file no longer matches its record and is verified in full (and entry files are owned by
//! the user and unwritable by others); a record cannot be forged without the secret; a file
//! changed within [`RACY_WINDOW`] of its verification is not recorded, so a change within the
//! filesystem's timestamp granularity cannot hide behind the record.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::identity::{FileIdentity, RACY_WINDOW, now_ns};
use super::records::{ensure_records_dir, owned_by_me, read_record, write_record};
use crate::error::{Context, Error, Op, Result};
use crate::key::CacheKey;

const SECRET_FILE: &str = "secret";
const SECRET_LEN: usize = 32;
const DOMAIN: &[u8] = b"warmcache verified file 1";

/// The records of entry files that verified, and the secret that authenticates them. Give it to
/// a file tier with [`Tier::verified_files`](crate::Tier::verified_files).
#[derive(Clone)]
pub struct VerifiedFiles {
    dir: PathBuf,
    secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for VerifiedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedFiles")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl VerifiedFiles {
    /// The records in `dir` (created owner-only if missing), with the secret in `dir/secret`
    /// (created from the system's random source if missing).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `dir` is not a directory owned by this user (a planted symlink is
    /// refused), when the secret is not a regular file of 32 bytes owned by this user and
    /// unreadable by others, or off Unix; [`Error::Io`] when they cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let ctx = || Context::new("verified-files", Op::Open);
        let config = |detail: String| Error::config(ctx(), detail);
        if !cfg!(unix) {
            return Err(config("verified files need Unix file identities".into()));
        }
        ensure_records_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => config(e.to_string()),
            _ => Error::io(ctx(), e),
        })?;
        let path = dir.join(SECRET_FILE);
        if read_record(&path, SECRET_LEN as u64).is_none() && !path.exists() {
            let mut secret = [0u8; SECRET_LEN];
            random(&mut secret).map_err(|e| Error::io(ctx(), e))?;
            write_record(&path, &secret).map_err(|e| Error::io(ctx(), e))?;
        }
        // Read back what is there: another process may have created it first.
        let secret = Self::load_secret(&path).map_err(config)?;
        Ok(Self { dir, secret })
    }

    fn load_secret(path: &Path) -> std::result::Result<[u8; SECRET_LEN], String> {
        let refuse = |why: &str| format!("refusing the secret {}: {why}", path.display());
        let meta = std::fs::symlink_metadata(path).map_err(|e| refuse(&e.to_string()))?;
        if !meta.is_file() || !owned_by_me(&meta) || private(&meta).is_err() {
            return Err(refuse(
                "not a regular file owned by this user with mode 0600 (remove it to make a new one)",
            ));
        }
        let bytes = read_record(path, SECRET_LEN as u64).ok_or_else(|| refuse("unreadable"))?;
        bytes
            .try_into()
            .map_err(|_| refuse("not 32 bytes (remove it to make a new one)"))
    }

    fn record_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.to_hex())
    }

    fn mac(&self, key: &CacheKey, identity: &FileIdentity) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        hasher.update(DOMAIN);
        hasher.update(key.as_bytes());
        hasher.update(&identity.to_bytes());
        hasher.finalize()
    }

    /// Whether `file`, opened for `key`, verified before and has not changed since.
    pub(crate) fn is_verified(&self, key: &CacheKey, file: &File) -> bool {
        let Ok(Some(identity)) = FileIdentity::of(file) else {
            return false;
        };
        let Some(record) = read_record(&self.record_path(key), 32) else {
            return false;
        };
        let Ok(record) = <[u8; 32]>::try_from(record) else {
            return false;
        };
        // blake3::Hash compares in constant time.
        self.mac(key, &identity) == blake3::Hash::from(record)
    }

    /// Records that `file`, opened for `key` and identified as `before` when it was opened,
    /// verified in full: unless it changed meanwhile or too recently to be trusted.
    pub(crate) fn record(&self, key: &CacheKey, file: &File, before: Option<FileIdentity>) {
        let Ok(Some(now)) = FileIdentity::of(file) else {
            return;
        };
        if before != Some(now) || now.is_racy(now_ns(), RACY_WINDOW) {
            return;
        }
        let path = self.record_path(key);
        if let Err(e) = write_record(&path, self.mac(key, &now).as_bytes()) {
            tracing::debug!(path = %path.display(), "could not record a verified file: {e}");
        }
    }
}

#[cfg(unix)]
fn private(meta: &std::fs::Metadata) -> std::result::Result<(), ()> {
    use std::os::unix::fs::MetadataExt;
    if meta.mode() & 0o077 == 0 {
        Ok(())
    } else {
        Err(())
    }
}

#[cfg(not(unix))]
fn private(_meta: &std::fs::Metadata) -> std::result::Result<(), ()> {
    Err(())
}

fn random(out: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    File::open("/dev/urandom")?.read_exact(out)
}
