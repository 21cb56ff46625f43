//! The integration tests of this crate, one module per former test binary: one link instead of one per file.

mod common;
#[path = "../../backend-s3/tests/common/faults.rs"]
mod faults;
#[path = "../../backend-s3/tests/common/mod.rs"]
mod s3;

mod cli;
mod cold_start;
mod coordination;
mod explain;
mod operator;
mod remote;
mod targets;
mod trust;
