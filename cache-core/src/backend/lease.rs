//! [`Lease`]: the coordination capability. A backend that several processes or hosts share can
//! hand out one lease per key, so that one of them computes a cold entry while the others wait
//! for it instead of computing it too.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// A lease on one key, held by this process: while it is held, and until it expires, every
/// other [`try_lease`](crate::Backend::try_lease) of the key answers `Ok(None)`.
///
/// A lease is advisory and ends one of three ways:
///
/// * [`release`](Self::release): the next `try_lease` succeeds at once;
/// * the holder stops renewing it (it died, or dropped the lease without releasing it): the
///   lease may be taken once `ttl` has passed since it was taken or last renewed, or sooner
///   where the backend can tell the holder is gone (a file lock is freed by the kernel when the
///   process dies);
/// * it expires while the holder still works (paused past `ttl`): another may take it, and
///   both compute. Entries are content-addressed and puts atomic, so that costs a computation,
///   never a wrong value.
#[async_trait]
pub trait Lease: Debug + Send + Sync {
    /// Extends the lease to `ttl` (as given to `try_lease`) from now. An error means the lease
    /// may have been lost; the holder carries on, at worst another computes too.
    ///
    /// Acts only on this lease (its own token or generation): once it expired and another
    /// holder took the key, a renewal changes nothing for the new holder and reports an error.
    async fn renew(&self) -> Result<()>;

    /// Gives the lease up, so that the next `try_lease` of the key succeeds at once.
    /// Releasing twice is not an error.
    ///
    /// Acts only on this lease: a stale holder's release never frees a newer holder's lease.
    /// The `holder` given to `try_lease` is a label for operators, not an identity to compare.
    async fn release(&self) -> Result<()>;

    /// How often the holder should call [`renew`](Self::renew): `None` for leases that stay
    /// held without renewal for as long as the holder lives (file locks). The default is a
    /// third of the ttl the lease was taken with, which the backend reports here.
    fn renew_every(&self) -> Option<Duration>;
}
