//! The conformance suite against a real Azure Blob Storage server (Azurite) on loopback,
//! through `az://`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use crate::azurite;
use crate::common;

/// The container is derived from `dir` and the endpoint recorded in it, so a reopen, or the
/// crash test's child process, finds the same container on the same server.
fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn warmcache_core::Backend>> {
    let port = common::recorded(dir, "azurite-port", || azurite::shared().port().to_string());
    let server = azurite::Attached::new(port.parse().unwrap());
    let container = common::bucket_for(dir);
    server.create_container(&container);
    Ok(Arc::new(server.backend_with(&container, "cache", |b| b)))
}

// Not cleared after each check: the server is this test run's own, and clearing 10,000 blobs
// through Azurite's batch delete takes longer than a tier timeout.
warmcache_conformance::backend_tests!(open);
