//! The list of checks, and running them against a [`Harness`].

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use warmcache_core::Backend;

use std::time::Duration;

use crate::Harness;
use crate::bound::{self, Recording, Running};
use crate::failure::{CheckResult, Failure, Verdict, skipped};
use crate::persistence;

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
    /// The crash test: re-runs the test binary as a child process (as the libtest test named
    /// by its third argument), kills it mid-write and reopens.
    Crash(fn(&dyn Harness, &Path, &str) -> CheckResult),
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Check::Async(_) => "Check::Async",
            Check::Blocking(_) => "Check::Blocking",
            Check::Harness(_) => "Check::Harness",
            Check::Crash(_) => "Check::Crash",
        })
    }
}

crate::__checks!(@list checks []);

fn temp_dir() -> Result<tempfile::TempDir, Failure> {
    tempfile::Builder::new()
        .prefix("warmcache-conformance-")
        .tempdir()
        .map_err(|e| Failure(format!("cannot create a temporary directory: {e}")))
}

/// Runs `check` against a fresh backend from `harness` in a new temporary directory, under
/// the bound [`BOUND_ENV`](crate::BOUND_ENV) sets. A crash check needs the libtest name it runs
/// as; here, without one, it is skipped.
pub fn run(harness: &dyn Harness, check: Check) -> CheckResult {
    run_as(harness, "check", check, None, bound::configured())
}

/// Runs `check` as [`run`] does, named `name` in messages, under the time bound `bound` (see
/// [`DEFAULT_BOUND`](crate::DEFAULT_BOUND)). A check past its bound fails naming the backend
/// operations in flight; one that opens backends itself (persistence, capacity, crash) ends the
/// test process with that message, since it cannot be stopped.
pub fn run_within(harness: &dyn Harness, name: &str, check: Check, bound: Duration) -> CheckResult {
    run_as(harness, name, check, None, bound)
}

fn run_as(
    harness: &dyn Harness,
    name: &str,
    check: Check,
    test_name: Option<&str>,
    limit: Duration,
) -> CheckResult {
    let dir = temp_dir()?;
    let running = Arc::new(Running::default());
    let recording = Recording {
        inner: harness,
        running: Arc::clone(&running),
    };
    let (result, overran) = match check {
        Check::Harness(f) => (
            bound::watched(name, limit, &running, || f(&recording, dir.path())),
            false,
        ),
        Check::Crash(f) => match test_name {
            Some(test) => (
                bound::watched(name, limit, &running, || f(&recording, dir.path(), test)),
                false,
            ),
            None => return skipped("the crash test runs only as a test emitted by backend_tests!"),
        },
        Check::Blocking(f) => {
            let backend = open(&recording, dir.path())?;
            bound::within(name, limit, &running, move || f(backend))
        }
        Check::Async(f) => {
            let backend = open(&recording, dir.path())?;
            bound::within(name, limit, &running, move || {
                runtime()?.block_on(f(backend))
            })
        }
    };
    if overran {
        // The backend may still be stuck: do not touch it again.
        return result;
    }
    // Cleaning up is not what the check tests: a slow or failing teardown is reported where a
    // person sees it (as skips are), never turned into the check's failure.
    if let Err(e) = harness.teardown(dir.path()) {
        let _ = writeln!(
            std::io::stderr(),
            "conformance check {name}: the harness's teardown failed (the store may keep what \
             the check wrote): {e}"
        );
    }
    result
}

/// The multi-thread Tokio runtime (two workers) async checks run on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure(format!("cannot build a multi-thread Tokio runtime: {e}")))
}

fn open(harness: &dyn Harness, dir: &Path) -> Result<Arc<dyn Backend>, Failure> {
    harness
        .open(dir)
        .map_err(|e| Failure(format!("opening the backend failed: {e}")))
}

fn find(name: &str) -> Result<Check, Failure> {
    CHECKS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| Failure(format!("no conformance check is called {name}")))
}

/// Runs the check called `name`.
pub fn run_named(harness: &dyn Harness, name: &str) -> CheckResult {
    run_as(harness, name, find(name)?, None, bound::configured())
}

/// Runs the check called `name` as the libtest test `test_name` (what [`backend_tests!`]
/// emits). In the crash test's child process, runs the writer and never returns.
///
/// [`backend_tests!`]: crate::backend_tests
pub fn run_test(harness: &dyn Harness, name: &str, test_name: &str) -> CheckResult {
    let check = find(name)?;
    if let Check::Crash(_) = check
        && let Some(dir) = std::env::var_os(persistence::CHILD_ENV)
    {
        persistence::crash_child(harness, Path::new(&dir));
    }
    run_as(harness, name, check, Some(test_name), bound::configured())
}

/// Runs every check in [`CHECKS`] and returns each outcome, in order (the crash test is
/// skipped here; see [`run`]).
pub fn run_all(harness: &dyn Harness) -> Vec<(&'static str, CheckResult)> {
    CHECKS
        .iter()
        .map(|(name, check)| {
            (
                *name,
                run_as(harness, name, *check, None, bound::configured()),
            )
        })
        .collect()
}

/// Runs the crash test as the test named `test_name` (its libtest path, which the child process
/// is re-executed as). In the child, runs the writer and never returns.
pub fn crash_test(harness: &dyn Harness, test_name: &str) -> CheckResult {
    run_test(harness, "crash_recovery", test_name)
}

/// Reports a verdict where a person sees it: a skipped check prints
/// `conformance check NAME skipped: REASON` straight to standard error, past libtest's output
/// capture, so a skip never reads as a pass.
pub fn report(name: &str, verdict: &Verdict) {
    if let Verdict::Skipped(reason) = verdict {
        let _ = writeln!(
            std::io::stderr(),
            "conformance check {name} skipped: {reason}"
        );
    }
}

/// Strips the crate name from a `module_path!()` and appends `test`, giving the libtest name.
#[doc(hidden)]
pub fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_, rest)) => format!("{rest}::{test}"),
        None => test.to_owned(),
    }
}
