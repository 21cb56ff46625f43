//! The conformance suite against redb files in temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use warmcache_conformance::WithCapacity;
use warmcache_core::Backend;
use warmcache_redb::RedbBackend;

/// 160 MiB with values up to 40 MiB, or the capacity the suite asks for.
fn sized(dir: &Path, capacity: Option<u64>) -> warmcache_core::Result<Arc<dyn Backend>> {
    let builder = RedbBackend::builder(dir.join("cache.redb"));
    let builder = match capacity {
        Some(capacity) => builder.capacity(capacity),
        None => builder.capacity(160 << 20).max_value_size(40 << 20),
    };
    Ok(Arc::new(builder.open()?))
}

fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    sized(dir, None)
}

warmcache_conformance::backend_tests!(WithCapacity(sized));

/// SIGKILLs of a writer mid-write (10, or `WARMCACHE_CRASH_KILLS`), each followed by a reopen.
#[test]
fn crash_torture() {
    warmcache_conformance::crash_torture_test(
        &open,
        &warmcache_conformance::test_name(module_path!(), "crash_torture"),
    );
}
