//! [`ClientRuntime`]: a Tokio runtime for a backend built on a Tokio-based network client.
//!
//! Such clients (HTTP, object_store, Redis) need a Tokio reactor, but a backend's futures are
//! polled by any executor: `futures::executor::block_on` on a plain thread, or another Tokio
//! runtime. Running every client call on a runtime of the backend's own, and awaiting its
//! `JoinHandle` (which any executor can), works from all of them. `warmcache-s3` is built this
//! way.

use std::future::Future;

use crate::error::{Context, Error, Result};

/// Where a network backend's client futures run: a runtime the backend owns (shut down when it
/// is dropped, without blocking) or one the embedder provides.
#[derive(Debug)]
pub struct ClientRuntime {
    owned: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl ClientRuntime {
    /// A multi-thread runtime of its own with `workers` threads named `name`, with I/O and
    /// timers enabled.
    ///
    /// # Errors
    ///
    /// The I/O error of starting its threads.
    pub fn owned(name: &str, workers: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            owned: Some(runtime),
        })
    }

    /// The embedder's runtime (it must have I/O and timers enabled).
    pub fn shared(handle: tokio::runtime::Handle) -> Self {
        Self {
            owned: None,
            handle,
        }
    }

    /// A cheap handle for running futures on this runtime (a lease can keep one).
    pub fn spawner(&self) -> Spawner {
        Spawner(self.handle.clone())
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.owned.take() {
            // Dropping a runtime from async code panics; this never blocks.
            runtime.shutdown_background();
        }
    }
}

/// Runs futures on a [`ClientRuntime`] and awaits them from any executor.
#[derive(Debug, Clone)]
pub struct Spawner(tokio::runtime::Handle);

impl Spawner {
    /// Runs `fut` on the runtime and awaits its result. A panic in `fut` resumes here; a
    /// runtime that has shut down (its backend was dropped) is [`Error::Unavailable`] in
    /// `context`.
    ///
    /// # Errors
    ///
    /// `fut`'s error, or [`Error::Unavailable`] as above.
    pub async fn spawn<T: Send + 'static>(
        &self,
        context: Context,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match self.0.spawn(fut).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Unavailable {
                context,
                source: Box::new(e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Op;

    #[test]
    fn client_futures_run_from_a_plain_thread_and_fail_cleanly_after_shutdown() {
        let runtime = ClientRuntime::owned("test-client", 1).unwrap();
        let spawner = runtime.spawner();
        // Needs a Tokio reactor (a timer), polled by futures' block_on on this plain thread.
        let got = futures::executor::block_on(spawner.spawn(Context::new("t", Op::Get), async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            Ok(7)
        }));
        assert_eq!(got.unwrap(), 7);
        drop(runtime);
        let after =
            futures::executor::block_on(spawner.spawn(Context::new("t", Op::Get), async { Ok(1) }));
        assert!(after.is_err());
    }
}
