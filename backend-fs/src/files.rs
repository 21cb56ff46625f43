//! Opening and creating files in a directory that others may be able to write.
//!
//! A cache directory can be shared with co-tenants (a group-writable `/var/cache`, a CI runner's
//! volume, a directory mounted into several containers), so no name in it is trusted: nothing is
//! opened through a symbolic link, nothing but a regular file is read, reads are bounded, and
//! files are created exclusively (never truncating what a planted link points at).

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// Mode of every file this tier creates: never writable by group or others, whatever the umask.
#[cfg(unix)]
const FILE_MODE: u32 = 0o644;

/// Opens `path` for reading without following a final symbolic link and without blocking on a
/// FIFO or device, and returns it with its metadata when it is a regular file.
///
/// `Ok(None)` when nothing is there; an [`io::ErrorKind::InvalidData`] error naming the file
/// type when something other than a regular file is (a symbolic link, FIFO, socket, device or
/// directory).
pub(crate) fn open_regular(path: &Path) -> io::Result<Option<(File, Metadata)>> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(not_regular(path, "a symbolic link"));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, describe(&meta)));
    }
    Ok(Some((file, meta)))
}

fn not_regular(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is {what}, not a regular file; something other than warmcache put it there \
             (remove it)",
            path.display()
        ),
    )
}

fn describe(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// Reads all of `file`, refusing to read more than `limit` bytes: a planted file cannot make a
/// reader allocate without bound. `Ok(None)` when the file holds more than `limit` bytes.
pub(crate) fn read_bounded(
    mut file: &File,
    size_hint: u64,
    limit: u64,
) -> io::Result<Option<Vec<u8>>> {
    if size_hint > limit {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0));
    (&mut file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Creates `path`, which must not exist (not even as a dangling symbolic link), for writing.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    // `create_new` is O_CREAT | O_EXCL, which never follows a symbolic link.
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(FILE_MODE);
    options.open(path)
}

/// The user this process creates files as, learned from a file it just created.
#[cfg(unix)]
pub(crate) fn owner_of(meta: &Metadata) -> u32 {
    meta.uid()
}

/// Why an open entry file may not be handed out for mapping, if it may not.
///
/// A mapping shares pages with the file, so whoever can write the file can change what the
/// mapping holds after it was verified. Only a file that nobody but this user can write stays
/// what it was verified to be: a regular file owned by `owner`, with no group or other write
/// permission, and one link (a second name could be a path a co-tenant controls).
#[cfg(unix)]
pub(crate) fn unsafe_to_map(meta: &Metadata, owner: u32) -> Option<String> {
    if let Some(why) = foreign_writer(meta, owner) {
        return Some(why);
    }
    if meta.nlink() != 1 {
        return Some(format!("{} hard links", meta.nlink()));
    }
    None
}

/// Why someone other than `owner` (or root) could have written the file's contents, if they
/// could: it is owned by another user, or has a group or other write bit.
#[cfg(unix)]
pub(crate) fn foreign_writer(meta: &Metadata, owner: u32) -> Option<String> {
    // Root can change any file anyway: its files are as safe as this user's own.
    if meta.uid() != owner && meta.uid() != 0 {
        return Some(format!("owned by uid {}, not {owner}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Creates the directory `dir` inside `parent` if missing, with `parent`'s permissions (so a
/// private cache stays private whatever the umask, and a deliberately shared one stays shared),
/// and makes a new one durable by syncing `parent`; refuses a `dir` that is a symbolic link or
/// not a directory, so nothing is ever written outside the cache through a planted link.
pub(crate) fn ensure_dir(parent: &Path, dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(parent)?.permissions().mode() & 0o7777;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
            }
            return File::open(parent)?.sync_all();
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {}, not a directory; refusing to write through it (remove it)",
                dir.display(),
                describe(&meta)
            ),
        ))
    }
}

/// Syncs the directory `dir`, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn owner_of(_meta: &Metadata) -> u32 {
    0
}

/// Without Unix permissions there is nothing to check beyond the file type.
#[cfg(not(unix))]
pub(crate) fn unsafe_to_map(_meta: &Metadata, _owner: u32) -> Option<String> {
    None
}

/// Without Unix permissions there is nothing to check.
#[cfg(not(unix))]
pub(crate) fn foreign_writer(_meta: &Metadata, _owner: u32) -> Option<String> {
    None
}
