//! Local files: their identity ([`FileIdentity`]), who else can write them
//! ([`writable_by_others`]), small owner-only records next to a cache ([`read_record`],
//! [`write_record`]), and the opt-in [`VerifiedFiles`] mode of file tiers.

mod exposure;
mod identity;
mod records;
mod verified;

pub use exposure::{create_cache_dir_all, why_writable_by_others, writable_by_others};
pub use identity::{FileIdentity, RACY_WINDOW, now_ns};
pub use records::{ensure_records_dir, euid, read_record, write_record};
pub use verified::VerifiedFiles;
