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
        // object_store reports refused requests from list calls as generic errors; its status type
        // is private, so the status is read from the message chain.
        err @ object_store::Error::Generic { .. } if access_denied(&err) => Error::config(
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

/// Whether an error chain carries an HTTP 401 or 403 answer.
fn access_denied(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if text.contains("401 Unauthorized") || text.contains("403 Forbidden") {
            return true;
        }
        current = e.source();
    }
    false
}
