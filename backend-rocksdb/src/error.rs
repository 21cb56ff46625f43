//! Turning RocksDB's errors into warmcache's.

use std::path::Path;

use warmcache_core::{Context, Error};

pub(crate) fn map(err: rocksdb::Error, context: Context, path: &Path) -> Error {
    let shown = path.display();
    match err.kind() {
        _ if err.as_ref().contains("lock file") || err.as_ref().contains("/LOCK") => {
            Error::Locked {
                context,
                detail: format!(
                    "the RocksDB cache at {shown} is already open in another process; close it, open \
                 this one read-only, or give this process its own directory ({err})"
                ),
            }
        }
        rocksdb::ErrorKind::Corruption => Error::Corrupt {
            context,
            detail: format!("the RocksDB cache at {shown} is damaged or not a database ({err})"),
            source: None,
        },
        rocksdb::ErrorKind::InvalidArgument | rocksdb::ErrorKind::NotSupported => Error::config(
            context,
            format!("cannot use {shown} as a RocksDB cache: {err}"),
        ),
        rocksdb::ErrorKind::IOError => Error::Io {
            context,
            source: std::io::Error::other(format!("{shown}: {err}")),
        },
        rocksdb::ErrorKind::Busy | rocksdb::ErrorKind::TimedOut | rocksdb::ErrorKind::TryAgain => {
            Error::Unavailable {
                context,
                source: Box::new(err),
            }
        }
        _ => Error::backend(context, err),
    }
}
