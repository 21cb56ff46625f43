//! The conformance suite against a real S3-compatible server (moto) on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use crate::common;

fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn warmcache_core::Backend>> {
    common::harness(dir)
}

// Cleared after each check, so a run leaves nothing on the server.
warmcache_conformance::backend_tests!(warmcache_conformance::ClearedAfter(open));
