//! The integration tests of this crate, one module per former test binary: one link instead of one per file.

mod files_self_test;
mod guide_backend;
mod self_test;
