//! The conformance suite against object_store's in-memory provider: a fast extra run of the
//! same code, in addition to (not instead of) the run against a real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use warmcache_core::Backend;
use warmcache_s3::S3Backend;

fn open(_dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    Ok(Arc::new(S3Backend::builder("memory://").build()?))
}

warmcache_conformance::backend_tests!(open);
