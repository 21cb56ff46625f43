//! Turning a panic inside a storage engine into an error.

use std::cell::Cell;
use std::sync::Once;

use crate::error::{Context, Error, Result};

thread_local! {
    /// How many `guard_panics` calls this thread is inside.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` under `catch_unwind` with the panic hook silent for this thread.
fn quiet_panics<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get().saturating_sub(1)));
    result
}

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
///
/// Nothing reaches the terminal: a panic inside `f` is not printed by the panic hook (the
/// error is the message). This works by wrapping the process's panic hook once, the first time
/// this runs, with one that stays silent only for panics on a thread inside `guard_panics` and
/// hands every other panic to the hook that was installed before; a hook installed later
/// replaces it, and guarded panics are then printed by that hook.
pub fn guard_panics<T>(
    context: impl FnOnce() -> Context,
    store: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    quiet_panics(f).unwrap_or_else(|panic| {
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
