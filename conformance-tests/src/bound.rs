//! Every check runs under a time bound, so a backend that deadlocks or hangs fails the check
//! that met it, naming the backend operation in flight, instead of hanging the test binary.
//!
//! The check runs on a thread of its own against the backend wrapped in [`InFlight`], which
//! records each operation while it runs. Past the bound the thread is left behind (a stuck
//! thread cannot be stopped) and the check fails.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use warmcache_core::backend::Lease;
use warmcache_core::{Backend, CacheKey, Capabilities, ListPage, Result, Usage};

use crate::Harness;
use crate::failure::{CheckResult, Failure};

/// The bound each check runs under unless [`BOUND_ENV`] says otherwise: generous, since the
/// slowest checks write tens of thousands of keys to a remote store.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(600);

/// The variable that sets the bound, in seconds, for the tests [`backend_tests!`] emits.
///
/// [`backend_tests!`]: crate::backend_tests
pub const BOUND_ENV: &str = "WARMCACHE_CONFORMANCE_CHECK_SECS";

/// The bound from [`BOUND_ENV`], else [`DEFAULT_BOUND`].
pub(crate) fn configured() -> Duration {
    std::env::var(BOUND_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_BOUND, Duration::from_secs)
}

/// The backend operations running now, with when each started.
#[derive(Debug, Default)]
pub(crate) struct Running {
    next: AtomicU64,
    ops: Mutex<Vec<(u64, String, Instant)>>,
}

impl Running {
    fn start(self: &Arc<Self>, op: String) -> Guard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.ops.lock().push((id, op, Instant::now()));
        Guard {
            running: Arc::clone(self),
            id,
        }
    }

    /// What is in flight, oldest first, in words.
    pub(crate) fn describe(&self) -> String {
        let ops = self.ops.lock();
        if ops.is_empty() {
            return "no backend operation was in flight (the check itself is stuck: a future \
                    that never wakes, or the backend blocking an executor thread between calls)"
                .to_owned();
        }
        let shown: Vec<String> = ops
            .iter()
            .take(4)
            .map(|(_, op, since)| format!("{op}, running for {:.1?}", since.elapsed()))
            .collect();
        let more = ops.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("in flight: {}{more}", shown.join("; "))
    }
}

struct Guard {
    running: Arc<Running>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.running.ops.lock().retain(|(id, _, _)| *id != self.id);
    }
}

/// A backend that records each operation in [`Running`] while it runs.
#[derive(Debug)]
pub(crate) struct InFlight {
    inner: Arc<dyn Backend>,
    running: Arc<Running>,
}

impl InFlight {
    pub(crate) fn wrap(inner: Arc<dyn Backend>, running: &Arc<Running>) -> Arc<dyn Backend> {
        Arc::new(Self {
            inner,
            running: Arc::clone(running),
        })
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Backend for InFlight {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        let _op = self.running.start(format!("get({key})"));
        self.inner.get(key).await
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        let _op = self
            .running
            .start(format!("put({key}, {} bytes)", value.len()));
        self.inner.put(key, value).await
    }

    async fn delete(&self, key: &CacheKey) -> Result<()> {
        let _op = self.running.start(format!("delete({key})"));
        self.inner.delete(key).await
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool> {
        let _op = self.running.start(format!("contains({key})"));
        self.inner.contains(key).await
    }

    async fn clear(&self) -> Result<()> {
        let _op = self.running.start("clear()".to_owned());
        self.inner.clear().await
    }

    async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        let _op = self
            .running
            .start(format!("list(after {after:?}, limit {limit})"));
        self.inner.list(after, limit).await
    }

    async fn usage(&self) -> Result<Usage> {
        let _op = self.running.start("usage()".to_owned());
        self.inner.usage().await
    }

    async fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>> {
        let _op = self.running.start(format!("get_tail({key}, {len})"));
        self.inner.get_tail(key, len).await
    }

    async fn open_file(&self, key: &CacheKey) -> Result<Option<std::fs::File>> {
        let _op = self.running.start(format!("open_file({key})"));
        self.inner.open_file(key).await
    }

    async fn shrink_to(&self, max_bytes: u64) -> Result<u64> {
        let _op = self.running.start(format!("shrink_to({max_bytes})"));
        self.inner.shrink_to(max_bytes).await
    }

    async fn try_lease(
        &self,
        key: &CacheKey,
        ttl: Duration,
        holder: &str,
    ) -> Result<Option<Box<dyn Lease>>> {
        let _op = self.running.start(format!("try_lease({key}, {ttl:?})"));
        self.inner.try_lease(key, ttl, holder).await
    }

    async fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool> {
        let _op = self.running.start(format!("pin({key}, {pinned})"));
        self.inner.pin(key, pinned).await
    }
}

/// A harness whose backends record their operations in one [`Running`].
pub(crate) struct Recording<'a> {
    pub(crate) inner: &'a dyn Harness,
    pub(crate) running: Arc<Running>,
}

impl Harness for Recording<'_> {
    fn open(&self, dir: &Path) -> Result<Arc<dyn Backend>> {
        Ok(InFlight::wrap(self.inner.open(dir)?, &self.running))
    }

    fn open_with_capacity(&self, dir: &Path, capacity: u64) -> Option<Result<Arc<dyn Backend>>> {
        self.inner
            .open_with_capacity(dir, capacity)
            .map(|opened| opened.map(|b| InFlight::wrap(b, &self.running)))
    }
}

fn overran(name: &str, bound: Duration, running: &Running) -> String {
    format!(
        "check {name} did not finish within {bound:?} ({BOUND_ENV} sets the bound in seconds); \
         {}",
        running.describe()
    )
}

/// Runs `check` on a thread of its own and waits at most `bound` for it; past the bound the
/// check fails naming what `running` shows in flight. The flag says whether it overran (the
/// check's thread and backend may still be stuck).
pub(crate) fn within<F>(
    name: &str,
    bound: Duration,
    running: &Running,
    check: F,
) -> (CheckResult, bool)
where
    F: FnOnce() -> CheckResult + Send + 'static,
{
    let (done, outcome) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("conformance {name}"))
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
            let _ = done.send(result);
        });
    if let Err(e) = spawned {
        let failure = Failure(format!("cannot start a thread for check {name}: {e}"));
        return (Err(failure), false);
    }
    match outcome.recv_timeout(bound) {
        Ok(Ok(result)) => (result, false),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => (Err(Failure(overran(name, bound, running))), true),
    }
}

/// Runs `check` on this thread (it borrows the harness) with a watchdog: past `bound` the
/// watchdog reports the check as [`within`] does, on standard error, and ends the test process
/// with a failure, since a stuck thread cannot be stopped and the check cannot return.
pub(crate) fn watched<F>(
    name: &str,
    bound: Duration,
    running: &Arc<Running>,
    check: F,
) -> CheckResult
where
    F: FnOnce() -> CheckResult,
{
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let (name_owned, running_owned) = (name.to_owned(), Arc::clone(running));
    let _ = std::thread::Builder::new()
        .name(format!("conformance watchdog {name}"))
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(bound) {
                let message = overran(&name_owned, bound, &running_owned);
                let _ = writeln!(std::io::stderr(), "conformance failure: {message}");
                std::process::exit(101);
            }
        });
    let result = check();
    let _ = done.send(());
    result
}
