//! Running blocking work without tying futures to one executor.

/// Runs `f` on Tokio's blocking pool when a Tokio runtime is current, inline otherwise.
///
/// This keeps disk backends' futures runtime-agnostic: under Tokio, blocking file and database
/// work does not stall the async workers; under `futures::executor::block_on` or another executor
/// it simply runs on the calling thread. It is the pattern `object_store` uses for its local store.
///
/// A panic in `f` is resumed in the caller. If the returned future is dropped while `f` runs on
/// the blocking pool, `f` still runs to completion: work started is never torn half-way.
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
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(f).await {
            Ok(value) => value,
            Err(join_error) => match join_error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only a runtime shutting down cancels a blocking task before it starts; the
                // work is lost with the runtime, and there is no value to return.
                Err(_) => std::panic::panic_any(
                    "warmcache: the Tokio runtime shut down before blocking work could run",
                ),
            },
        },
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_inline_without_runtime() {
        let id = std::thread::current().id();
        let ran_on =
            futures::executor::block_on(maybe_spawn_blocking(move || std::thread::current().id()));
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
