//! The integration tests of this crate, one module per former test binary: one link instead of one per file.

mod conformance;
mod durability;
mod files;
mod hostile;
mod multi_process;
mod tiered_files;
mod wasmtime_trailer;
