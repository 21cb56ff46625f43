//! Local files: their identity ([`FileIdentity`]), who else can write them
//! ([`writable_by_others`]), small authenticated records next to a cache ([`RecordDir`]), sealed
//! in-memory copies ([`sealed_copy`]), and the opt-in [`VerifiedFiles`] mode of file tiers.

mod exposure;
mod identity;
mod records;
mod sealed;
mod verified;

pub use exposure::{create_cache_dir_all, why_writable_by_others, writable_by_others};
pub use identity::{FileIdentity, RACY_WINDOW, now_ns};
pub use records::{RecordDir, euid};
pub use sealed::sealed_copy;
pub use verified::VerifiedFiles;
