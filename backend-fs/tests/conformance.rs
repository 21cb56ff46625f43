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

/// SIGKILLs of a writer mid-write: `WARMCACHE_CRASH_KILLS` of them (10 by default; the scale
/// run, `scripts/crash-torture.sh`, asks for 100), each followed by a reopen that must show
/// every acknowledged put and no torn value.
#[test]
#[allow(clippy::print_stderr)]
fn crash_torture() {
    let kills = std::env::var("WARMCACHE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let harness = open;
    match warmcache_conformance::crash_torture(&harness, "crash_torture", kills, 7) {
        Ok(report) => {
            eprintln!(
                "crash torture of {}: {} kills, {} mid-write, {} acknowledged puts checked",
                env!("CARGO_PKG_NAME"),
                report.kills,
                report.mid_write,
                report.acknowledged
            );
            assert!(
                report.mid_write > 0,
                "no kill landed inside a put: {report:?}"
            );
        }
        Err(failure) => panic!("{failure}"),
    }
}
