//! Per-key locks between processes sharing the directory: the file tier's
//! [`Lease`](warmcache_core::backend::Lease).
//!
//! A lease is an exclusive advisory lock (`flock`) on `locks/<key>`, held through an open file.
//! The kernel frees it when the holder's process dies, so a killed compiler never strands its
//! waiters, and it needs no renewal. No lock is held across keys.
//!
//! Lock files are removed on release without a race: only the holder unlinks, while it still
//! holds the lock, and whoever locks a file checks afterwards that its name still leads to the
//! same file (it may have locked a file that was unlinked meanwhile, and then tries again).
//! A file left by a holder that died is simply locked again by the next one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use warmcache_core::backend::{Lease, maybe_spawn_blocking};
use warmcache_core::{CacheKey, Context, Error, Op, Result};

#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use crate::files::ensure_dir;
use crate::layout::{lock_path, locks_dir};
use crate::store::io_err;

/// Attempts at locking a name that keeps being unlinked under us, before reporting it busy.
const ATTEMPTS: usize = 8;

/// The lock on one key's lock file.
#[derive(Debug)]
pub(crate) struct FileLease {
    /// The locked file; taken out on release.
    file: Mutex<Option<File>>,
    path: PathBuf,
    context: Context,
}

/// Tries to lock `key`'s lock file in `root`; `Ok(None)` when another open file holds it.
pub(crate) fn try_lock(
    root: &Path,
    key: &CacheKey,
    holder: &str,
    context: impl Fn() -> Context,
) -> Result<Option<FileLease>> {
    let dir = locks_dir(root);
    ensure_dir(root, &dir).map_err(|e| io_err(context(), &dir, e))?;
    let path = lock_path(root, key);
    for _ in 0..ATTEMPTS {
        let mut file = match open_lock_file(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error::Corrupt {
                    context: context(),
                    detail: e.to_string(),
                    source: None,
                });
            }
            Err(e) => return Err(io_err(context(), &path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(io_err(context(), &path, e)),
        }
        if !still_named(&file, &path).map_err(|e| io_err(context(), &path, e))? {
            // Released and unlinked between our open and our lock: lock the new file.
            continue;
        }
        // For people reading the directory; nobody parses it. Never truncated: only a file this
        // process just created (empty) is written.
        if file.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = writeln!(file, "{holder}");
        }
        return Ok(Some(FileLease {
            file: Mutex::new(Some(file)),
            path,
            context: context(),
        }));
    }
    Ok(None)
}

/// Opens (creating) a lock file: never through a symbolic link, never blocking on a FIFO, never
/// truncating, and only a regular file with one link that this user (or root) owns. A lock
/// anyone else planted is not honoured: an [`io::ErrorKind::InvalidData`] error, so the caller
/// skips coordination for that key instead of waiting on it, and a hard link planted at the name
/// is never written through.
fn open_lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    options
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.kind() == io::ErrorKind::PermissionDenied {
            return io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "lock file {} is another user's (this user cannot open it); not honoured",
                    path.display()
                ),
            );
        }
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is a symbolic link, not a lock file (remove it)",
                    path.display()
                ),
            );
        }
        e
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file, not a lock file (remove it)",
                path.display()
            ),
        ));
    }
    #[cfg(unix)]
    {
        let me = warmcache_core::files::euid();
        if meta.uid() != me && meta.uid() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "lock file {} belongs to uid {}, not this user (uid {me}); not honoured",
                    path.display(),
                    meta.uid()
                ),
            ));
        }
        if meta.nlink() != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "lock file {} has {} links, so it is another file's name too; not \
                     honoured (remove it)",
                    path.display(),
                    meta.nlink()
                ),
            ));
        }
    }
    Ok(file)
}

/// Whether `path` still names the open `file`.
#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Without inode numbers lock files are never unlinked, so the name always leads to the file.
#[cfg(not(unix))]
fn still_named(_file: &File, _path: &Path) -> io::Result<bool> {
    Ok(true)
}

#[async_trait]
impl Lease for FileLease {
    async fn renew(&self) -> Result<()> {
        Ok(())
    }

    async fn release(&self) -> Result<()> {
        let Some(file) = self.file.lock().take() else {
            return Ok(());
        };
        let (path, context) = (self.path.clone(), self.context.clone());
        maybe_spawn_blocking(move || {
            // Unlinked while still locked, so nobody can lock this file and believe it current.
            let unlinked = if cfg!(unix) && still_named(&file, &path).unwrap_or(false) {
                std::fs::remove_file(&path)
            } else {
                Ok(())
            };
            drop(file);
            match unlinked {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(context, &path, e)),
                _ => Ok(()),
            }
        })
        .await
    }

    fn renew_every(&self) -> Option<Duration> {
        None
    }
}

/// The context of errors about `key`'s lock, as the trait reports them.
pub(crate) fn lease_context(name: &str, key: &CacheKey) -> Context {
    Context::with_key(name.to_owned(), Op::Lease, key)
}
