//! The conformance suite against RocksDB databases in temporary directories.

use std::path::Path;
use std::sync::Arc;

use warmcache_core::Backend;
use warmcache_rocksdb::RocksDbBackend;

fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        RocksDbBackend::builder(dir.join("rocks"))
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
