//! The conformance suite against the in-memory backend.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use warmcache_core::Backend;
use warmcache_memory::MemoryBackend;

fn open(_dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    Ok(Arc::new(
        MemoryBackend::builder()
            .capacity(160 << 20)
            .max_value_size(40 << 20)
            .build()?,
    ))
}

warmcache_conformance::backend_tests!(open);
