//! Running blocking work without tying futures to one executor.

use std::sync::OnceLock;

/// Runs `f` on a blocking thread pool and awaits it: the current Tokio runtime's when there is
/// one, otherwise a small pool of warmcache's own (a Tokio runtime used for nothing but its
/// blocking pool, started on first use, whose idle threads exit after ten seconds).
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
