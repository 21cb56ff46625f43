//! The conformance suite against a real cache directory in a temporary directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warmcache_conformance::WithCapacity;
use warmcache_core::Backend;
use warmcache_fs::FsBackend;

/// 160 MiB with values up to 40 MiB, or the capacity the suite asks for.
fn sized(dir: &Path, capacity: Option<u64>) -> warmcache_core::Result<Arc<dyn Backend>> {
    let builder = FsBackend::builder(dir.join("cache")).touch_interval(Duration::ZERO);
    let builder = match capacity {
        Some(capacity) => builder.capacity(capacity),
        None => builder.capacity(160 << 20).max_value_size(40 << 20),
    };
    Ok(Arc::new(builder.open()?))
}

fn open(dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    sized(dir, None)
}

/// The whole suite again at 64 KiB, where checks cut their values and counts to fit.
fn open_small(dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    sized(dir, Some(64 << 10))
}

warmcache_conformance::backend_tests!(WithCapacity(sized));
warmcache_conformance::backend_tests!(small, open_small);

/// SIGKILLs of a writer mid-write (10, or `WARMCACHE_CRASH_KILLS`), each followed by a reopen.
#[test]
fn crash_torture() {
    warmcache_conformance::crash_torture_test(
        &open,
        &warmcache_conformance::test_name(module_path!(), "crash_torture"),
    );
}
