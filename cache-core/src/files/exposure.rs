//! Who besides this user can change a directory: the one test behind "a cache that others can
//! write needs a secret" (see the Trust section of `docs/DESIGN.md`).

use std::fs::Metadata;
use std::io;
use std::path::Path;

/// Why users other than this process's (and root) could change what the directory or file at
/// `path` holds, or `None` when nobody else can. A symbolic link is not followed: it is
/// reported, since whoever planted it decides where it leads.
///
/// Used by backends to report [`Capabilities::shared`](crate::Capabilities::shared) for a
/// directory others can write, and by callers that must refuse such a directory without a
/// secret.
///
/// # Errors
///
/// The error of reading `path`'s metadata (for example [`io::ErrorKind::NotFound`]).
pub fn writable_by_others(path: &Path) -> io::Result<Option<String>> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok(why_writable_by_others(&meta).map(|why| format!("{} is {why}", path.display())))
}

/// [`writable_by_others`] for metadata already read (of an open handle, say): the reason
/// without the path.
#[cfg(unix)]
pub fn why_writable_by_others(meta: &Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if meta.file_type().is_symlink() {
        return Some("a symbolic link".to_owned());
    }
    let uid = meta.uid();
    let me = super::records::euid();
    // Root can change anything anyway; any other owner can change the mode at will.
    if uid != me && uid != 0 {
        return Some(format!("owned by uid {uid}, not by this user (uid {me})"));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Some(format!("writable by every user (mode {mode:o})"));
    }
    if mode & 0o020 != 0 {
        return Some(format!(
            "writable by its group, gid {} (mode {mode:o})",
            meta.gid()
        ));
    }
    None
}

/// Off Unix, ownership and modes are not known: nothing is reported.
#[cfg(not(unix))]
pub fn why_writable_by_others(_meta: &Metadata) -> Option<String> {
    None
}

/// Creates the directory `path` and any missing parents, none of them writable by group or
/// others whatever the umask (mode 0755), so a cache this user creates is private and needs no
/// secret; except inside a group-shared directory (setgid, as `chmod 2775` makes it), whose
/// permissions a new directory takes, as the kernel passes on its group. A directory that
/// exists is left as it is.
///
/// # Errors
///
/// The error of creating a directory or setting its permissions.
pub fn create_cache_dir_all(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_cache_dir_all(parent)?;
    }
    match std::fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let parent_mode = path
            .parent()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.permissions().mode() & 0o7777);
        let mode = if parent_mode & 0o2000 != 0 {
            parent_mode
        } else {
            0o755
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
