//! [`RecordDir`]: small records kept next to a cache in a directory of this user's, opened
//! once and then used only through its descriptor, each record authenticated with a secret kept
//! in the directory.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Name of the secret in a records directory; record names are never this.
const SECRET: &str = "secret";
const SECRET_LEN: usize = 32;
const MAC_LEN: usize = 32;

/// A directory of records that decide what runs (which hash a file has, which entry file
/// verified), so it is trusted the way entries are (docs/DESIGN.md, "Trust"):
///
/// * it is opened once with `O_DIRECTORY | O_NOFOLLOW` and must be a directory owned by this
///   user that nobody else can write; every later read, write and removal is relative to that
///   descriptor (`openat`, `renameat`, `unlinkat`), so swapping the path for a link or another
///   directory afterwards changes nothing;
/// * each record carries a MAC under a secret kept in the directory (`secret`, 32 random bytes,
///   owner-only, written durably), over a domain, the record's name and its body: a record
///   planted or altered without the secret is ignored, and a record is valid only under the
///   name it was written for.
///
/// Records are written whole (a temporary file, then a rename) and a missing, unreadable or
/// unauthentic one reads as absent: records only save work, so losing one costs a recompute.
pub struct RecordDir {
    dir: File,
    path: PathBuf,
    secret: [u8; SECRET_LEN],
}

impl std::fmt::Debug for RecordDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordDir")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn refused(path: &Path, why: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{} is not a directory owned by this user that only it can write ({why}; a symlink \
             there is not followed): remove it, or fix its owner and mode",
            path.display()
        ),
    )
}

#[cfg(unix)]
impl RecordDir {
    /// Opens the records directory `path`, creating it (mode 0700, and its missing parents as
    /// cache directories) if it is missing, and its secret, creating that if it is missing.
    ///
    /// # Errors
    ///
    /// [`std::io::ErrorKind::InvalidInput`] naming `path` when it is a symlink, not a
    /// directory, owned by another user or writable by others, or when its secret is not a
    /// private regular file of 32 bytes of this user's; the I/O error of creating or reading
    /// them otherwise.
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            super::create_cache_dir_all(parent)?;
        }
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(rustix::fs::CWD, &path, flags, Mode::empty()).map_err(
                |e| match e {
                    rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => refused(&path, e),
                    e => e.into(),
                },
            )?;
        let stat = rustix::fs::fstat(&fd)?;
        if stat.st_uid != super::euid() {
            return Err(refused(&path, format!("owned by uid {}", stat.st_uid)));
        }
        if stat.st_mode & 0o022 != 0 {
            return Err(refused(
                &path,
                format!(
                    "writable by group or others, mode {:o}",
                    stat.st_mode & 0o7777
                ),
            ));
        }
        let mut dir = Self {
            dir: File::from(fd),
            path,
            secret: [0; SECRET_LEN],
        };
        dir.secret = dir.load_or_create_secret()?;
        Ok(dir)
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load_or_create_secret(&self) -> std::io::Result<[u8; SECRET_LEN]> {
        match self.load_secret() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut secret = [0u8; SECRET_LEN];
        File::open("/dev/urandom")?.read_exact(&mut secret)?;
        let temp = self.write_temp(SECRET, &secret, true)?;
        // Not over one another process made meanwhile: then that one is read back below.
        let placed = rustix::fs::renameat_with(
            &self.dir,
            &temp,
            &self.dir,
            SECRET,
            rustix::fs::RenameFlags::NOREPLACE,
        );
        if placed.is_err() {
            let _ = rustix::fs::unlinkat(&self.dir, &temp, rustix::fs::AtFlags::empty());
        }
        match placed {
            Ok(()) => self.dir.sync_all()?,
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        self.load_secret()
    }

    fn load_secret(&self) -> std::io::Result<[u8; SECRET_LEN]> {
        let refuse = |why: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "refusing the secret {}: {why} (remove it to make a new one)",
                    self.path.join(SECRET).display()
                ),
            )
        };
        let (file, stat) = self.open_regular(SECRET)?;
        if stat.st_uid != super::euid() || stat.st_mode & 0o077 != 0 {
            return Err(refuse("not a file of this user's with mode 0600"));
        }
        let mut secret = [0u8; SECRET_LEN];
        let mut rest = Vec::new();
        let mut file = file;
        file.read_exact(&mut secret)
            .map_err(|_| refuse("shorter than 32 bytes"))?;
        file.read_to_end(&mut rest)?;
        if !rest.is_empty() {
            return Err(refuse("longer than 32 bytes"));
        }
        Ok(secret)
    }

    /// Opens `name` in the directory for reading, without following a link and without
    /// waiting on a FIFO: only a regular file.
    fn open_regular(&self, name: &str) -> std::io::Result<(File, rustix::fs::Stat)> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.dir, name, flags, Mode::empty())?;
        let stat = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{name} is not a regular file"),
            ));
        }
        Ok((File::from(fd), stat))
    }

    /// Writes `bytes` to a new temporary file for `name` (mode 0600) and returns its name.
    fn write_temp(&self, name: &str, bytes: &[u8], durable: bool) -> std::io::Result<String> {
        use rustix::fs::{Mode, OFlags};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temp = format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.dir, temp.as_str(), flags, Mode::from_raw_mode(0o600))?;
        let mut file = File::from(fd);
        let written = file
            .write_all(bytes)
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) });
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&self.dir, temp.as_str(), rustix::fs::AtFlags::empty());
            return Err(e);
        }
        Ok(temp)
    }

    fn mac(&self, domain: &[u8], name: &str, body: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        for part in [domain, name.as_bytes(), body] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize()
    }

    /// The body of record `name` written for `domain`: `None` when it is missing, not a regular
    /// file, longer than `max` bytes of body, or not authentic (planted or altered without the
    /// secret, or written under another name or domain).
    pub fn read(&self, name: &str, domain: &[u8], max: usize) -> Option<Vec<u8>> {
        if name == SECRET {
            return None;
        }
        let (file, stat) = self.open_regular(name).ok()?;
        let len = usize::try_from(stat.st_size).ok()?;
        if len < MAC_LEN || len - MAC_LEN > max {
            return None;
        }
        let mut bytes = Vec::with_capacity(len);
        file.take((max + MAC_LEN) as u64)
            .read_to_end(&mut bytes)
            .ok()?;
        let tag_at = bytes.len().checked_sub(MAC_LEN)?;
        let tag: [u8; MAC_LEN] = bytes[tag_at..].try_into().ok()?;
        bytes.truncate(tag_at);
        // blake3::Hash compares in constant time.
        (self.mac(domain, name, &bytes) == blake3::Hash::from(tag)).then_some(bytes)
    }

    /// Writes record `name` for `domain`, replacing any previous one atomically (a link
    /// planted at the name is replaced, not followed).
    ///
    /// # Errors
    ///
    /// When the temporary file cannot be written or renamed; `name` must be a plain file name.
    pub fn write(&self, name: &str, domain: &[u8], body: &[u8]) -> std::io::Result<()> {
        if name == SECRET || name.contains('/') || name.starts_with('.') || name.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name:?} is not a record name"),
            ));
        }
        let mut bytes = Vec::with_capacity(body.len() + MAC_LEN);
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(self.mac(domain, name, body).as_bytes());
        let temp = self.write_temp(name, &bytes, false)?;
        rustix::fs::renameat(&self.dir, temp.as_str(), &self.dir, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(&self.dir, temp.as_str(), rustix::fs::AtFlags::empty());
            e.into()
        })
    }

    /// Removes record `name`, if there is one.
    pub fn remove(&self, name: &str) {
        if name != SECRET {
            let _ = rustix::fs::unlinkat(&self.dir, name, rustix::fs::AtFlags::empty());
        }
    }
}

#[cfg(not(unix))]
impl RecordDir {
    /// Records need Unix file ownership: unsupported here.
    ///
    /// # Errors
    ///
    /// Always [`std::io::ErrorKind::Unsupported`].
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let _ = path.into();
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Never anything.
    pub fn read(&self, _name: &str, _domain: &[u8], _max: usize) -> Option<Vec<u8>> {
        None
    }

    /// Unsupported.
    ///
    /// # Errors
    ///
    /// Always.
    pub fn write(&self, _name: &str, _domain: &[u8], _body: &[u8]) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// Nothing.
    pub fn remove(&self, _name: &str) {}
}

/// This process's effective user id: the owner of every file it creates.
#[cfg(unix)]
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Off Unix there are no user ids: 0.
#[cfg(not(unix))]
pub fn euid() -> u32 {
    0
}
