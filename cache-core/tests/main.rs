//! The integration tests of this crate, one module per former test binary: one link instead of one per file.

mod common;

mod cache;
mod format;
mod kinds;
mod metrics;
mod shared;
mod stuck;
mod tiered;
