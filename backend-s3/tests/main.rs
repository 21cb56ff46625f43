//! The integration tests of this crate, one module per former test binary: one link instead of one per file.

#[path = "common/azurite.rs"]
mod azurite;
mod common;
#[path = "common/faults.rs"]
mod faults;

mod bounded;
mod conformance;
mod conformance_azure;
mod conformance_file;
mod conformance_memory;
mod conformance_webdav;
mod construct;
mod errors;
mod leases;
mod one_fault_at_a_time;
mod remote;
mod stack;
