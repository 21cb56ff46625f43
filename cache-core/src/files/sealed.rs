//! Sealed copies: an entry file copied into anonymous memory that nobody can write once sealed,
//! for loads that must not change after they verified even if the file's owner writes to it.

use std::fs::File;

/// A copy of `file`'s contents in a memory file sealed against writes, growth and shrinking
/// (`memfd_create` with `F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL`): what it
/// holds when this returns is what it holds for good, whoever else has the original.
///
/// # Errors
///
/// When the memory file cannot be made, filled or sealed; [`std::io::ErrorKind::Unsupported`]
/// off Linux.
#[cfg(target_os = "linux")]
pub fn sealed_copy(file: &File) -> std::io::Result<File> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "warmcache-entry",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut copy = File::from(fd);
    // From the start, whatever the handle's position; a kernel-side copy (copy_file_range or
    // sendfile) where the system offers one.
    let mut source: &File = file;
    std::io::Seek::seek(&mut source, std::io::SeekFrom::Start(0))?;
    let len = file.metadata()?.len();
    std::io::copy(&mut std::io::Read::take(source, len), &mut copy)?;
    rustix::fs::fcntl_add_seals(
        &copy,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )?;
    Ok(copy)
}

/// Sealed memory files are a Linux feature.
///
/// # Errors
///
/// Always [`std::io::ErrorKind::Unsupported`].
#[cfg(not(target_os = "linux"))]
pub fn sealed_copy(_file: &File) -> std::io::Result<File> {
    Err(std::io::ErrorKind::Unsupported.into())
}
