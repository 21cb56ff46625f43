//! The integration tests of this crate, one module per former test binary: one link instead of one per file.

mod conformance;
mod eviction;
mod open_errors;
