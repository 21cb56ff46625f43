//! Turning object_store's errors into warmcache's.

use warmcache_core::{Context, Error};

/// Maps an object_store error to the category a caller can act on. object_store's messages
/// name the object path and the HTTP status, never credentials.
pub(crate) fn map(err: object_store::Error, context: Context) -> Error {
    match err {
        object_store::Error::NotSupported { source } => {
            tracing::debug!(error = %source, "operation not supported by the object store");
            Error::NotSupported { context }
        }
        object_store::Error::InvalidPath { source } => Error::config(context, source.to_string()),
        object_store::Error::UnknownConfigurationKey { key, .. } => {
            Error::config(context, format!("unknown object store option {key:?}"))
        }
        err @ (object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. }) => Error::config(
            context,
            format!("access denied ({err}); check the credentials and the bucket's permissions"),
        ),
        // Connection failures, timeouts, throttling and server errors after retries.
        err @ object_store::Error::Generic { .. } => Error::Unavailable {
            context,
            source: Box::new(err),
        },
        other => Error::backend(context, other),
    }
}
