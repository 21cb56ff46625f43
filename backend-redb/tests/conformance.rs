//! The conformance suite against redb files in temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use warmcache_core::Backend;
use warmcache_redb::RedbBackend;

fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        RedbBackend::builder(dir.join("cache.redb"))
            .capacity(160 << 20)
            .max_value_size(40 << 20)
            .open()?,
    ))
}

warmcache_conformance::backend_tests!(open);

/// SIGKILLs of a writer mid-write (10, or `WARMCACHE_CRASH_KILLS`), each followed by a reopen.
#[test]
fn crash_torture() {
    warmcache_conformance::crash_torture_test(&open, "crash_torture");
}
