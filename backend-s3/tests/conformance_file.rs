//! The conformance suite against object_store's local file system provider (`file://`), a
//! persistent store with unordered listing: the same backend code, another provider.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use warmcache_core::Backend;
use warmcache_s3::S3Backend;

fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    let url = format!("file://{}", dir.join("objects").display());
    Ok(Arc::new(S3Backend::builder(url).build()?))
}

warmcache_conformance::backend_tests!(open);
