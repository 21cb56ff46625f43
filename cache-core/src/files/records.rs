//! Small records kept in a cache directory: read without following symlinks, written whole
//! through a temporary file and a rename, owner-only.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes sure `dir` is a directory of records: created owner-only (0700) if missing, refused
/// unless it is a real directory owned by this user (a planted symlink or file is not followed).
///
/// # Errors
///
/// [`std::io::ErrorKind::InvalidInput`] naming `dir` when it is not such a directory; the
/// error of creating it otherwise.
pub fn ensure_records_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && owned_by_me(&m) => Ok(()),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is not a directory owned by this user (a symlink or file there is not \
                 followed)",
                dir.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir)
        }
        Err(e) => Err(e),
    }
}

/// This process's effective user id: the owner of every file it creates.
#[cfg(unix)]
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// Off Unix there are no user ids: 0.
#[cfg(not(unix))]
pub fn euid() -> u32 {
    0
}

/// Whether this process's user owns the file `meta` describes.
#[cfg(unix)]
pub(crate) fn owned_by_me(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.uid() == euid()
}

/// Whether this process's user owns the file: unknown off Unix, so no.
#[cfg(not(unix))]
pub(crate) fn owned_by_me(_meta: &std::fs::Metadata) -> bool {
    false
}

/// The bytes of the record at `path`: `None` when it is missing, is not a regular file (a
/// planted symlink is not followed), or is over `max` bytes.
pub fn read_record(path: &Path, max: u64) -> Option<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let file = options.open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Writes `bytes` as the record at `path` (mode 0600), replacing any previous one atomically
/// (a symlink planted there is replaced, not followed).
///
/// # Errors
///
/// When the temporary file cannot be written or renamed.
pub fn write_record(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
