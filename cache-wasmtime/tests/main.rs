//! The integration tests of this crate, one module per former test binary: one link instead of one per file.

mod common;
#[path = "common/corpus.rs"]
mod corpus_files;
#[path = "../../backend-s3/tests/common/faults.rs"]
mod faults;
#[path = "../../backend-s3/tests/common/mod.rs"]
mod s3;

mod baseline;
mod coordination;
mod corpus;
mod cotenant;
mod explain;
mod fleet;
mod flights;
mod format;
mod fresh_instances;
mod full_disk;
mod incremental;
mod instances;
mod invalidation;
mod isolation;
mod levels;
mod memo;
mod safety;
mod single_flight;
mod targets;
mod tiers;
mod verified_files;
