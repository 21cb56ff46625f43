//! The conformance suite against a real cache directory in a temporary directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warmcache_core::Backend;
use warmcache_fs::FsBackend;

fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        FsBackend::builder(dir.join("cache"))
            .capacity(160 << 20)
            .max_value_size(40 << 20)
            .touch_interval(Duration::ZERO)
            .open()?,
    ))
}

warmcache_conformance::backend_tests!(open);

/// SIGKILLs of a writer mid-write (10, or `WARMCACHE_CRASH_KILLS`), each followed by a reopen.
#[test]
fn crash_torture() {
    warmcache_conformance::crash_torture_test(&open, "crash_torture");
}
