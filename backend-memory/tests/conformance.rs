//! The conformance suite against the in-memory backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use warmcache_conformance::WithCapacity;
use warmcache_core::Backend;
use warmcache_memory::MemoryBackend;

/// 160 MiB with values up to 40 MiB, or the capacity the suite asks for.
fn open(_dir: &Path, capacity: Option<u64>) -> warmcache_core::Result<Arc<dyn Backend>> {
    let builder = match capacity {
        Some(capacity) => MemoryBackend::builder().capacity(capacity),
        None => MemoryBackend::builder()
            .capacity(160 << 20)
            .max_value_size(40 << 20),
    };
    Ok(Arc::new(builder.build()?))
}

/// The whole suite again at 16 KiB, where checks cut their values and counts to fit.
fn open_small(_dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        MemoryBackend::builder().capacity(16 << 10).build()?,
    ))
}

warmcache_conformance::backend_tests!(WithCapacity(open));
warmcache_conformance::backend_tests!(small, open_small);
