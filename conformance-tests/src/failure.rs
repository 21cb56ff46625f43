//! How a check reports that a backend broke the contract.

use std::fmt;

/// A broken contract: what was expected and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl From<warmcache_core::Error> for Failure {
    fn from(e: warmcache_core::Error) -> Self {
        Failure(format!("unexpected backend error: {e}"))
    }
}

/// What a check concluded about a backend that did not break the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The behaviour was checked and holds.
    Passed,
    /// The check does not apply to this backend (for example persistence, for a volatile
    /// one): nothing was checked, for the reason given.
    Skipped(String),
}

/// The outcome of one check.
pub type CheckResult = Result<Verdict, Failure>;

/// The outcome of a check that found nothing wrong.
pub(crate) const PASSED: CheckResult = Ok(Verdict::Passed);

/// The outcome of a check that does not apply, with the reason.
pub(crate) fn skipped(reason: impl Into<String>) -> CheckResult {
    Ok(Verdict::Skipped(reason.into()))
}

/// Fails the check with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::failure::Failure(format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure;
