//! "Verified since last change": an opt-in mode of local file tiers in which an entry file that
//! verified once is not hashed again on later loads while its identity is unchanged.
//!
//! After a file verifies in full under the current secret, a record is written in a
//! [`RecordDir`] (authenticated with its secret, used through one descriptor): the file's
//! identity (device, inode, size, modification and change times) and the key id of the
//! integrity mode it verified under, under the entry's key. A later load whose file has the same
//! identity, with a record that authenticates for the same key id, checks the envelope's
//! structure, key and kind but skips hashing the body.
//!
//! What this gives up: damage to a file's data that changes none of its metadata (a media error,
//! a bug below the filesystem, a write to the block device) goes undetected until a full check
//! (`warmcache verify`). What it keeps: any write through the filesystem changes the change time,
//! so the file no longer matches its record and is verified in full (and entry files are owned by
//! the user and unwritable by others); a record cannot be forged without the secret; a file
//! changed within [`RACY_WINDOW`] of its verification is not recorded, so a change within the
//! filesystem's timestamp granularity cannot hide behind the record.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::identity::{FileIdentity, RACY_WINDOW, now_ns};
use super::records::RecordDir;
use crate::error::{Context, Error, Op, Result};
use crate::key::CacheKey;

const DOMAIN: &[u8] = b"warmcache verified file 2";

/// The records of entry files that verified, authenticated by the secret of their records
/// directory ([`RecordDir`]). Give it to a file tier with
/// [`Tier::verified_files`](crate::Tier::verified_files).
#[derive(Clone, Debug)]
pub struct VerifiedFiles {
    records: Arc<RecordDir>,
}

impl VerifiedFiles {
    /// The records in `dir` (created owner-only if missing), with the secret in `dir/secret`
    /// (created from the system's random source, written durably, if missing).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `dir` is not a directory owned by this user that only it can
    /// write (a planted symlink is refused), when the secret is not a regular file of 32
    /// bytes owned by this user and unreadable by others, or off Unix; [`Error::Io`] when they
    /// cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let ctx = || Context::new("verified-files", Op::Open);
        let records = RecordDir::open(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported => {
                Error::config(ctx(), e.to_string())
            }
            _ => Error::io(ctx(), e),
        })?;
        Ok(Self {
            records: Arc::new(records),
        })
    }

    /// What a record of `key`'s file says: the file's identity, and the key id of the
    /// integrity mode it verified under (a record made under one secret says nothing under
    /// another).
    fn body(key_id: &str, identity: &FileIdentity) -> Vec<u8> {
        let mut body = identity.to_bytes().to_vec();
        body.extend_from_slice(key_id.as_bytes());
        body
    }

    /// Whether `file`, opened for `key`, verified under the integrity mode `key_id` names
    /// before and has not changed since.
    pub(crate) fn is_verified(&self, key: &CacheKey, key_id: &str, file: &File) -> bool {
        let Ok(Some(identity)) = FileIdentity::of(file) else {
            return false;
        };
        let expected = Self::body(key_id, &identity);
        self.records
            .read(&key.to_hex(), DOMAIN, expected.len())
            .is_some_and(|body| body == expected)
    }

    /// Records that `file`, opened for `key` and identified as `before` when it was opened,
    /// verified in full under `key_id`: unless it changed meanwhile or too recently to be
    /// trusted.
    pub(crate) fn record(
        &self,
        key: &CacheKey,
        key_id: &str,
        file: &File,
        before: Option<FileIdentity>,
    ) {
        let Ok(Some(now)) = FileIdentity::of(file) else {
            return;
        };
        if before != Some(now) || now.is_racy(now_ns(), RACY_WINDOW) {
            return;
        }
        if let Err(e) = self
            .records
            .write(&key.to_hex(), DOMAIN, &Self::body(key_id, &now))
        {
            tracing::debug!(dir = %self.records.path().display(), "could not record a verified file: {e}");
        }
    }
}
