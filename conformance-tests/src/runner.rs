//! The list of checks, and running them against a [`Harness`].

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use warmcache_core::Backend;

use crate::Harness;
use crate::failure::{CheckResult, Failure};
use crate::{basic, concurrency, front, persistence};

type AsyncCheck = fn(Arc<dyn Backend>) -> Pin<Box<dyn Future<Output = CheckResult> + Send>>;

/// How a check runs.
#[derive(Clone, Copy)]
pub enum Check {
    /// An async check on a fresh backend, run on a multi-thread Tokio runtime.
    Async(AsyncCheck),
    /// A check on a fresh backend that drives its own executors or threads.
    Blocking(fn(Arc<dyn Backend>) -> CheckResult),
    /// A check that opens (and reopens) backends itself in a directory.
    Harness(fn(&dyn Harness, &Path) -> CheckResult),
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Check::Async(_) => "Check::Async",
            Check::Blocking(_) => "Check::Blocking",
            Check::Harness(_) => "Check::Harness",
        })
    }
}

macro_rules! async_check {
    ($f:path) => {
        Check::Async(|b| Box::pin($f(b)))
    };
}

/// Every check but the crash test (which needs to re-execute its test binary; see
/// [`crash_test`](crate::crash_test)), by name. The [`backend_tests!`](crate::backend_tests)
/// macro emits one `#[test]` for each.
pub const CHECKS: &[(&str, Check)] = &[
    ("round_trip_sizes", async_check!(basic::round_trip_sizes)),
    ("missing_key", async_check!(basic::missing_key)),
    ("overwrite", async_check!(basic::overwrite)),
    (
        "delete_present_and_missing",
        async_check!(basic::delete_present_and_missing),
    ),
    ("contains", async_check!(basic::contains)),
    ("clear", async_check!(basic::clear)),
    (
        "list_and_usage_consistent",
        async_check!(basic::list_and_usage_consistent),
    ),
    ("many_small_keys", async_check!(basic::many_small_keys)),
    ("capacity_bound", async_check!(basic::capacity_bound)),
    (
        "concurrent_writers_one_key",
        async_check!(concurrency::concurrent_writers_one_key),
    ),
    (
        "readers_during_overwrites",
        async_check!(concurrency::readers_during_overwrites),
    ),
    (
        "concurrent_distinct_keys",
        async_check!(concurrency::concurrent_distinct_keys),
    ),
    (
        "dropped_put_leaves_old_or_new",
        async_check!(concurrency::dropped_put_leaves_old_or_new),
    ),
    (
        "driven_by_block_on",
        Check::Blocking(concurrency::driven_by_block_on),
    ),
    (
        "driven_by_tokio",
        Check::Blocking(concurrency::driven_by_tokio),
    ),
    (
        "persistence_across_reopen",
        Check::Harness(persistence::persistence_across_reopen),
    ),
    (
        "front_invalidation",
        async_check!(front::front_invalidation),
    ),
    ("front_key_echo", async_check!(front::front_key_echo)),
    (
        "front_schema_version",
        async_check!(front::front_schema_version),
    ),
    (
        "front_single_flight",
        Check::Blocking(front::front_single_flight),
    ),
    (
        "front_corruption_recovered",
        async_check!(front::front_corruption_recovered),
    ),
];

fn temp_dir() -> Result<tempfile::TempDir, Failure> {
    tempfile::Builder::new()
        .prefix("warmcache-conformance-")
        .tempdir()
        .map_err(|e| Failure(format!("cannot create a temporary directory: {e}")))
}

/// Runs `check` against a fresh backend from `harness` in a new temporary directory.
pub fn run(harness: &dyn Harness, check: Check) -> CheckResult {
    let dir = temp_dir()?;
    match check {
        Check::Harness(f) => f(harness, dir.path()),
        Check::Blocking(f) => f(open(harness, dir.path())?),
        Check::Async(f) => {
            let backend = open(harness, dir.path())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Failure(format!("cannot build a Tokio runtime: {e}")))?;
            rt.block_on(f(backend))
        }
    }
}

fn open(harness: &dyn Harness, dir: &Path) -> Result<Arc<dyn Backend>, Failure> {
    harness
        .open(dir)
        .map_err(|e| Failure(format!("opening the backend failed: {e}")))
}

/// Runs the check called `name`.
pub fn run_named(harness: &dyn Harness, name: &str) -> CheckResult {
    let check = CHECKS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| Failure(format!("no conformance check is called {name}")))?;
    run(harness, check)
}

/// Runs every check in [`CHECKS`] and returns each outcome, in order.
pub fn run_all(harness: &dyn Harness) -> Vec<(&'static str, CheckResult)> {
    CHECKS
        .iter()
        .map(|(name, check)| (*name, run(harness, *check)))
        .collect()
}

/// Runs the crash test as the test named `test_name` (its libtest path, which the child process
/// is re-executed as). In the child, runs the writer and never returns.
pub fn crash_test(harness: &dyn Harness, test_name: &str) -> CheckResult {
    if let Some(dir) = std::env::var_os(persistence::CHILD_ENV) {
        persistence::crash_child(harness, Path::new(&dir));
    }
    let dir = temp_dir()?;
    persistence::crash_recovery(harness, dir.path(), test_name)
}

/// Strips the crate name from a `module_path!()` and appends `test`, giving the libtest name.
#[doc(hidden)]
pub fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_, rest)) => format!("{rest}::{test}"),
        None => test.to_owned(),
    }
}
