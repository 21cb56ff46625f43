//! Running blocking work without tying futures to one executor.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;

thread_local! {
    /// Set while a future runs under [`inline_allowed`]: nothing above it needs to interrupt it.
    static INLINE_ALLOWED: Cell<bool> = const { Cell::new(false) };
}

/// Polls `fut` with blocking work allowed to run inline on the polling thread when no Tokio
/// runtime is current. For a tier without a timeout nothing can interrupt the operation anyway,
/// so handing it to another thread would only cost a thread hand-off per call (about 15 us on a
/// 4 KiB read, `cargo bench -p warmcache-fs -- get`). Maintenance walks over a local backend
/// (listing, reading trailers) use it for the same reason: nothing above them interrupts them.
///
/// ```
/// use warmcache_core::backend::{inline_allowed, maybe_spawn_blocking};
///
/// let here = std::thread::current().id();
/// let ran_on = futures::executor::block_on(inline_allowed(maybe_spawn_blocking(|| {
///     std::thread::current().id()
/// })));
/// assert_eq!(ran_on, here);
/// ```
pub async fn inline_allowed<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        let before = INLINE_ALLOWED.replace(true);
        let polled = fut.as_mut().poll(cx);
        INLINE_ALLOWED.set(before);
        polled
    })
    .await
}

/// Runs `f` on a blocking thread pool and awaits it: the current Tokio runtime's when there is
/// one, otherwise a small pool of warmcache's own (a Tokio runtime used for nothing but its
/// blocking pool, started on first use, whose idle threads exit after ten seconds). A
/// [`Tiered`](crate::Tiered) tier without a timeout runs it inline instead when no runtime is
/// current: nothing could interrupt it, and the hand-off would only cost time.
///
/// This keeps disk backends' futures runtime-agnostic and, above all, bounded: the future
/// completes when `f` does, but it can be dropped at any time. So a timeout above it (a
/// [`Tier::timeout`](crate::Tier::timeout)) frees the caller from a stuck disk or NFS server even
/// on a plain thread under `futures::executor::block_on`, which running `f` inline could not.
/// Under Tokio, blocking file and database work does not stall the async workers either. It is
/// the pattern `object_store` uses for its local store.
///
/// A panic in `f` is resumed in the caller. If the returned future is dropped while `f` runs,
/// `f` still runs to completion: work started is never torn half-way. Only when no thread can
/// be started at all does `f` run inline.
///
/// ```
/// # futures::executor::block_on(async {
/// let n = warmcache_core::backend::maybe_spawn_blocking(|| 6 * 7).await;
/// assert_eq!(n, 42);
/// # });
/// ```
pub async fn maybe_spawn_blocking<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let handle = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle,
        Err(_) if INLINE_ALLOWED.get() => return f(),
        Err(_) => match fallback_pool() {
            Some(handle) => handle.clone(),
            None => return f(),
        },
    };
    match handle.spawn_blocking(f).await {
        Ok(value) => value,
        Err(join_error) => match join_error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a blocking task before it starts; the
            // work is lost with the runtime, and there is no value to return.
            Err(_) => std::panic::panic_any(
                "warmcache: the Tokio runtime shut down before blocking work could run",
            ),
        },
    }
}

/// Most threads warmcache's own pool runs at once; more work waits for one.
const FALLBACK_THREADS: usize = 64;

/// The blocking pool for callers without a Tokio runtime. It lives for the whole process (a
/// static is never dropped), so its tasks are never cancelled.
fn fallback_pool() -> Option<&'static tokio::runtime::Handle> {
    static POOL: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    POOL.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .thread_name("warmcache-blocking")
            .max_blocking_threads(FALLBACK_THREADS)
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "could not start warmcache's blocking pool; running blocking work inline");
            })
            .ok()
    })
    .as_ref()
    .map(tokio::runtime::Runtime::handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_pool_of_its_own_without_runtime() {
        let id = std::thread::current().id();
        let ran_on =
            futures::executor::block_on(maybe_spawn_blocking(move || std::thread::current().id()));
        assert_ne!(ran_on, id);
    }

    #[test]
    fn runs_inline_where_nothing_could_interrupt_it() {
        let id = std::thread::current().id();
        let ran_on = futures::executor::block_on(inline_allowed(maybe_spawn_blocking(move || {
            std::thread::current().id()
        })));
        assert_eq!(ran_on, id);
    }

    #[test]
    fn runs_on_blocking_pool_under_tokio() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let caller = std::thread::current().id();
        let ran_on = rt.block_on(maybe_spawn_blocking(|| std::thread::current().id()));
        assert_ne!(ran_on, caller);
    }
}
