//! Turning redb's errors into warmcache's.

use std::path::Path;

use warmcache_core::{Context, Error};

/// Maps any redb error to the warmcache category a caller can act on.
pub(crate) fn map(err: impl Into<redb::Error>, context: Context, path: &Path) -> Error {
    match err.into() {
        redb::Error::DatabaseAlreadyOpen => Error::Locked {
            context,
            detail: format!(
                "the cache database {} is already open in another process or handle; \
                 close that one, or give this process its own cache file",
                path.display()
            ),
        },
        redb::Error::Corrupted(detail) => Error::Corrupt {
            context,
            detail: format!(
                "the cache database {} is corrupt ({detail}); delete it or open it with \
                 open_or_recreate, a cache can always be rebuilt",
                path.display()
            ),
            source: None,
        },
        redb::Error::UpgradeRequired(version) => Error::Corrupt {
            context,
            detail: format!(
                "the cache database {} uses redb file format {version}, which this build cannot \
                 read; delete it or open it with open_or_recreate",
                path.display()
            ),
            source: None,
        },
        redb::Error::RepairAborted => Error::Corrupt {
            context,
            detail: format!(
                "the cache database {} needs a repair that was aborted",
                path.display()
            ),
            source: None,
        },
        redb::Error::ValueTooLarge(size) => Error::Capacity {
            context,
            size: size as u64,
            limit: MAX_REDB_VALUE,
        },
        redb::Error::Io(source)
            if matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            Error::Corrupt {
                context,
                detail: format!(
                    "the cache database {} is not a readable redb file ({source}); delete it or \
                     open it with open_or_recreate, a cache can always be rebuilt",
                    path.display()
                ),
                source: Some(Box::new(source)),
            }
        }
        redb::Error::Io(source) => Error::Io { context, source },
        other => Error::backend(context, other),
    }
}

/// redb's own limit on one value.
pub(crate) const MAX_REDB_VALUE: u64 = 3 << 30;
