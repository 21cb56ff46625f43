//! Turning a panic inside a storage engine into an error.

use crate::error::{Context, Error, Result};

/// Runs `f`, and turns a panic inside it into [`Error::Corrupt`] for `context`, naming `store`.
///
/// For stores that can panic on damaged data (redb does not checksum pages on normal reads and
/// can reach an `unreachable!()` on a damaged page): the caller gets an error, which a tier stack
/// counts as a miss, instead of a crashed process on every run that touches the page.
///
/// ```
/// use warmcache_core::{Context, ErrorKind, Op, backend::guard_panics};
/// let r: warmcache_core::Result<()> =
///     guard_panics(|| Context::new("db", Op::Get), "the file db.bin", || panic!("bad page"));
/// assert_eq!(r.unwrap_err().kind(), ErrorKind::Corrupt);
/// ```
pub fn guard_panics<T>(
    context: impl FnOnce() -> Context,
    store: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        Err(Error::corrupt(
            context(),
            format!(
                "the storage engine panicked reading {store} ({message}): the data is damaged; \
                 the entry reads as a miss, and moving the file aside rebuilds the cache"
            ),
        ))
    })
}
