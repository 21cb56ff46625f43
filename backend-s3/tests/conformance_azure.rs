//! The conformance suite against a real Azure Blob Storage server (Azurite) on loopback,
//! through `az://`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

#[path = "common/azurite.rs"]
mod azurite;
mod common;

/// The container is derived from `dir` and the endpoint recorded in it, so a reopen, or the
/// crash test's child process, finds the same container on the same server.
fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn warmcache_core::Backend>> {
    let record = dir.join("azurite-port");
    let port: u16 = match std::fs::read_to_string(&record) {
        Ok(port) => port.parse().unwrap(),
        Err(_) => {
            let port = azurite::shared().port();
            std::fs::write(&record, port.to_string()).unwrap();
            port
        }
    };
    let server = azurite::Attached::new(port);
    let digest = blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex();
    let container = format!("wc-{}", &digest[..20]);
    server.create_container(&container);
    Ok(Arc::new(server.backend_with(&container, "cache", |b| b)))
}

// Not cleared after each check: the server is this test run's own, and clearing 10,000 blobs
// through Azurite's batch delete takes longer than a tier timeout.
warmcache_conformance::backend_tests!(open);
