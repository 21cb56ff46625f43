//! The error type every backend and tier returns.

use std::fmt;
use std::time::Duration;

use crate::key::CacheKey;

/// A boxed error from a backend's own library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The storage operation that failed, for error messages and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening or creating the store.
    Open,
    /// [`Backend::get`](crate::Backend::get).
    Get,
    /// [`Backend::get_tail`](crate::Backend::get_tail).
    GetTail,
    /// [`Backend::put`](crate::Backend::put).
    Put,
    /// [`Backend::delete`](crate::Backend::delete).
    Delete,
    /// [`Backend::contains`](crate::Backend::contains).
    Contains,
    /// [`Backend::clear`](crate::Backend::clear).
    Clear,
    /// [`Backend::list`](crate::Backend::list).
    List,
    /// [`Backend::usage`](crate::Backend::usage).
    Usage,
    /// [`Backend::open_file`](crate::Backend::open_file).
    OpenFile,
    /// [`Backend::shrink_to`](crate::Backend::shrink_to).
    Shrink,
    /// [`Backend::try_lease`](crate::Backend::try_lease) and the [`Lease`](crate::backend::Lease)
    /// it returns.
    Lease,
    /// [`Backend::pin`](crate::Backend::pin).
    Pin,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Open => "open",
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Contains => "contains",
            Op::Clear => "clear",
            Op::List => "list",
            Op::Usage => "usage",
            Op::OpenFile => "open_file",
            Op::Shrink => "shrink",
            Op::Lease => "lease",
            Op::GetTail => "get_tail",
            Op::Pin => "pin",
        })
    }
}

/// Where an error happened: which backend, which operation, which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The backend's name, as given by [`Backend::name`](crate::Backend::name).
    pub backend: String,
    /// The operation.
    pub op: Op,
    /// The key concerned, when the operation has one.
    pub key: Option<CacheKey>,
}

impl Context {
    /// Context for an operation without a key.
    pub fn new(backend: impl Into<String>, op: Op) -> Self {
        Self {
            backend: backend.into(),
            op,
            key: None,
        }
    }

    /// Context for an operation on `key`.
    pub fn with_key(backend: impl Into<String>, op: Op, key: &CacheKey) -> Self {
        Self {
            backend: backend.into(),
            op,
            key: Some(*key),
        }
    }

    /// Context for an operation on `key` when it has one.
    pub fn maybe_key(backend: impl Into<String>, op: Op, key: Option<&CacheKey>) -> Self {
        Self {
            backend: backend.into(),
            op,
            key: key.copied(),
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend: {}", self.backend, self.op)?;
        if let Some(key) = &self.key {
            write!(f, " of key {key}")?;
        }
        Ok(())
    }
}

/// A storage error, by the kind of thing a caller can do about it.
///
/// Every variant carries a [`Context`] naming the backend, the operation and the key. Backends
/// keep their detailed errors as the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be reached or is temporarily unable to serve. Retrying later may work.
    #[error("{context} failed: unavailable: {source}")]
    Unavailable {
        /// Where it happened.
        context: Context,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The operation did not finish in time.
    #[error("{context} failed: timed out after {after:?}")]
    Timeout {
        /// Where it happened.
        context: Context,
        /// The timeout that expired.
        after: Duration,
    },

    /// The value does not fit: larger than the backend's maximum value size or its capacity.
    #[error("{context} failed: value of {size} bytes exceeds the limit of {limit} bytes")]
    Capacity {
        /// Where it happened.
        context: Context,
        /// The size of the refused value.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },

    /// Stored data is damaged: a corrupt database file, a torn value, an entry that fails
    /// verification.
    #[error("{context} failed: corrupt data: {detail}")]
    Corrupt {
        /// Where it happened.
        context: Context,
        /// What is wrong.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// The store is locked by another process or handle.
    #[error("{context} failed: {detail}")]
    Locked {
        /// Where it happened.
        context: Context,
        /// What holds the lock and what to do about it.
        detail: String,
    },

    /// Invalid configuration: a bad option value, an unusable path.
    #[error("{context} failed: invalid configuration: {detail}")]
    Config {
        /// Where it happened.
        context: Context,
        /// What is wrong.
        detail: String,
    },

    /// The backend does not offer this operation.
    #[error("{context} failed: not supported by this backend")]
    NotSupported {
        /// Where it happened.
        context: Context,
    },

    /// A file-system or device error.
    #[error("{context} failed: I/O error: {source}")]
    Io {
        /// Where it happened.
        context: Context,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Any other backend-specific failure.
    #[error("{context} failed: {source}")]
    Backend {
        /// Where it happened.
        context: Context,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// The category of an [`Error`], for code that decides what to do by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::Unavailable`].
    Unavailable,
    /// See [`Error::Timeout`].
    Timeout,
    /// See [`Error::Capacity`].
    Capacity,
    /// See [`Error::Corrupt`].
    Corrupt,
    /// See [`Error::Locked`].
    Locked,
    /// See [`Error::Config`].
    Config,
    /// See [`Error::NotSupported`].
    NotSupported,
    /// See [`Error::Io`].
    Io,
    /// See [`Error::Backend`].
    Backend,
}

impl Error {
    /// The error's category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Capacity { .. } => ErrorKind::Capacity,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::Config { .. } => ErrorKind::Config,
            Error::NotSupported { .. } => ErrorKind::NotSupported,
            Error::Io { .. } => ErrorKind::Io,
            Error::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Where the error happened.
    pub fn context(&self) -> &Context {
        match self {
            Error::Unavailable { context, .. }
            | Error::Timeout { context, .. }
            | Error::Capacity { context, .. }
            | Error::Corrupt { context, .. }
            | Error::Locked { context, .. }
            | Error::Config { context, .. }
            | Error::NotSupported { context }
            | Error::Io { context, .. }
            | Error::Backend { context, .. } => context,
        }
    }

    /// Whether retrying later may succeed (unavailable or timed out).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// An I/O error in `context`.
    pub fn io(context: Context, source: std::io::Error) -> Self {
        Error::Io { context, source }
    }

    /// A backend-specific error in `context`.
    pub fn backend(context: Context, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            context,
            source: source.into(),
        }
    }

    /// Corrupt data in `context`.
    pub fn corrupt(context: Context, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            context,
            detail: detail.into(),
            source: None,
        }
    }

    /// Invalid configuration in `context`.
    pub fn config(context: Context, detail: impl Into<String>) -> Self {
        Error::Config {
            context,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_backend_operation_and_key() {
        let key = CacheKey::from_bytes([0xab; 32]);
        let err = Error::Capacity {
            context: Context::with_key("memory", Op::Put, &key),
            size: 10,
            limit: 5,
        };
        let msg = err.to_string();
        assert!(msg.contains("memory backend"), "{msg}");
        assert!(msg.contains("put"), "{msg}");
        assert!(msg.contains(&key.to_hex()), "{msg}");
        assert!(msg.contains("10 bytes"), "{msg}");
        assert_eq!(err.kind(), ErrorKind::Capacity);
        assert!(!err.is_transient());
    }
}
