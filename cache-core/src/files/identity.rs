//! What identifies a local file's content without reading it: device, inode, size and the
//! modification and change times. Any write through the filesystem changes the change time.

use std::fs::File;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file's identity, from `fstat` of an open handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Change time (inode and content changes), nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of the open `file`, or `None` when it is not a regular file or the platform
    /// has no inode numbers.
    ///
    /// # Errors
    ///
    /// When `fstat` fails.
    #[cfg(unix)]
    pub fn of(file: &File) -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        if !m.is_file() {
            return Ok(None);
        }
        Ok(Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }))
    }

    /// The identity of the open `file`: never known off Unix.
    ///
    /// # Errors
    ///
    /// Never.
    #[cfg(not(unix))]
    pub fn of(_file: &File) -> std::io::Result<Option<Self>> {
        Ok(None)
    }

    /// Whether the file changed less than `window` before `at_ns` (nanoseconds since the epoch):
    /// a record of it taken then cannot be trusted, because a further change within the
    /// filesystem's timestamp granularity would not change its times (git's "racily clean").
    pub fn is_racy(&self, at_ns: i128, window: Duration) -> bool {
        self.mtime_ns.max(self.ctime_ns) + window.as_nanos() as i128 >= at_ns
    }

    /// The identity's fields as bytes, for a record or a MAC.
    pub fn to_bytes(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        out[..8].copy_from_slice(&self.dev.to_le_bytes());
        out[8..16].copy_from_slice(&self.ino.to_le_bytes());
        out[16..24].copy_from_slice(&self.size.to_le_bytes());
        out[24..40].copy_from_slice(&self.mtime_ns.to_le_bytes());
        out[40..56].copy_from_slice(&self.ctime_ns.to_le_bytes());
        out
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// How much older than a record a file's times must be for the record to be trusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(1);
