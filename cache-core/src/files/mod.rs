//! Local files: their identity ([`FileIdentity`]), small owner-only records next to a cache
//! ([`read_record`], [`write_record`]), and the opt-in [`VerifiedFiles`] mode of file tiers.

mod identity;
mod records;
mod verified;

pub use identity::{FileIdentity, RACY_WINDOW, now_ns};
pub use records::{ensure_records_dir, read_record, write_record};
pub use verified::VerifiedFiles;
