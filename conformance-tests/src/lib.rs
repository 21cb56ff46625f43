//! The behaviour every warmcache [`Backend`] must show, as tests.
//!
//! A backend author writes a [`Harness`] (how to open the backend in a directory) and calls
//! [`backend_tests!`]; the macro expands to a module with one named `#[test]` per behaviour:
//! round trips from 0 B to 32 MiB, missing keys, overwrite and fresh reads after it, delete,
//! clear, keys that differ in one byte, paged listing and its edge cases, usage, 10,000 keys,
//! concurrent writers and readers without torn values, the capacity bound (measured by what the
//! backend returns), futures under `block_on` and under Tokio, dropped futures, `open_file`,
//! `shrink_to` and leases (`try_lease`: exclusion, expiry, renewal, release) where offered,
//! persistence across reopen, a crash test that SIGKILLs a writer process inside its puts, and
//! the [`Cache`](warmcache_core::Cache) front over the backend (invalidation, key echo, schema
//! versions, single-flight, corruption). The list of checks is kept once, in [`CHECKS`]; a check
//! that does not apply to a backend reports itself as skipped. Checks size their values and
//! counts from the backend's declared capacity and `max_value_size`, so a bounded backend of any
//! size (from 1 KiB) runs the same suite.
//!
//! **Writing a backend?** Start with the [guide]: the dependencies, the trait and its methods,
//! the helpers, the paging contract, how the crash test runs, what each check catches, and a
//! complete example backend.
//!
//! The same checks are public functions (in [`checks`]) returning a [`CheckResult`], and
//! [`run_all`] runs them all, for use outside libtest.
//!
//! [`FaultyBackend`] and [`CorruptingBackend`] wrap any backend to test the layers above it
//! under errors, slowness, hangs, outages and bit flips.
//!
//! # Example
//!
//! In `tests/conformance.rs` of a backend crate (here with the in-memory backend):
//!
//! ```ignore
//! use std::path::Path;
//! use std::sync::Arc;
//! use warmcache_core::Backend;
//! use warmcache_memory::MemoryBackend;
//!
//! fn open(_dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
//!     Ok(Arc::new(MemoryBackend::with_capacity(256 << 20)?))
//! }
//!
//! warmcache_conformance::backend_tests!(open);
//! ```
//!
//! Or run the checks by hand:
//!
//! ```
//! # use std::path::Path;
//! # use std::sync::Arc;
//! # use warmcache_core::{Backend, bytes::Bytes, CacheKey, Capabilities, ListPage, Usage, Result, KeyInfo};
//! # use warmcache_core::backend::page_from_sorted;
//! # #[derive(Debug, Default)]
//! # struct MapBackend(std::sync::Mutex<std::collections::BTreeMap<CacheKey, Bytes>>);
//! # #[warmcache_core::async_trait]
//! # impl Backend for MapBackend {
//! #     fn name(&self) -> &str { "map" }
//! #     fn capabilities(&self) -> Capabilities { Capabilities::new() }
//! #     async fn get(&self, k: &CacheKey) -> Result<Option<Bytes>> { Ok(self.0.lock().unwrap().get(k).cloned()) }
//! #     async fn put(&self, k: &CacheKey, v: Bytes) -> Result<()> { self.0.lock().unwrap().insert(*k, v); Ok(()) }
//! #     async fn delete(&self, k: &CacheKey) -> Result<()> { self.0.lock().unwrap().remove(k); Ok(()) }
//! #     async fn contains(&self, k: &CacheKey) -> Result<bool> { Ok(self.0.lock().unwrap().contains_key(k)) }
//! #     async fn clear(&self) -> Result<()> { self.0.lock().unwrap().clear(); Ok(()) }
//! #     async fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
//! #         let all: Vec<KeyInfo> = self.0.lock().unwrap().iter().map(|(k, v)| KeyInfo { key: *k, size: v.len() as u64 }).collect();
//! #         Ok(page_from_sorted(&all, after, limit))
//! #     }
//! #     async fn usage(&self) -> Result<Usage> { let m = self.0.lock().unwrap(); Ok(Usage { entries: m.len() as u64, bytes: m.values().map(|v| v.len() as u64).sum() }) }
//! # }
//! let harness = |_dir: &Path| -> warmcache_core::Result<Arc<dyn Backend>> {
//!     Ok(Arc::new(MapBackend::default()))
//! };
//! let outcome = warmcache_conformance::run_named(&harness, "overwrite");
//! assert_eq!(outcome, Ok(warmcache_conformance::Verdict::Passed));
//! let outcome = warmcache_conformance::run_named(&harness, "persistence_across_reopen");
//! assert!(matches!(outcome, Ok(warmcache_conformance::Verdict::Skipped(_))));
//! ```

use std::path::Path;
use std::sync::Arc;

use warmcache_core::Backend;

mod basic;
mod bound;
mod budget;
mod by_cost;
mod capacity;
mod concurrency;
mod coordination;
mod failure;
mod faults;
mod front;
mod listing;
mod maintenance;
mod model;
mod observe;
mod persistence;
mod runner;
mod values;

pub use bound::{BOUND_ENV, DEFAULT_BOUND};
pub use failure::{CheckResult, Failure, Verdict};
pub use faults::{
    BlockingFaultyBackend, CorruptingBackend, FaultConfig, FaultedOps, FaultyBackend,
};
pub use persistence::{CrashReport, crash_torture, crash_torture_test};
pub use runner::{
    CHECKS, Check, crash_test, report, run, run_all, run_named, run_test, run_within, test_name,
};

/// The backend author's guide: from an empty crate to a backend that passes the suite.
///
#[doc = include_str!("../GUIDE.md")]
///
/// ```rust,ignore
#[doc = include_str!("../tests/guide_backend.rs")]
/// ```
pub mod guide {}

/// The checks as public functions, for running them outside the macro.
pub mod checks {
    pub use crate::basic::*;
    pub use crate::budget::{MIN_CAPACITY, MIN_VALUE_SIZE};
    pub use crate::by_cost::{OpenEvicting, eviction_by_cost};
    pub use crate::capacity::{CHECK_CAPACITY, capacity_bound};
    pub use crate::concurrency::*;
    pub use crate::coordination::*;
    pub use crate::front::*;
    pub use crate::listing::*;
    pub use crate::maintenance::*;
    pub use crate::persistence::{CHILD_ENV, crash_recovery, persistence_across_reopen};
    pub use crate::values::{identify as identify_value, make as make_value};
}

/// Opens the backend under test.
///
/// `open(dir)` creates a backend whose persistent state (if any) lives in `dir`, or reopens the
/// one already there. Every check calls it with a fresh temporary directory; persistence checks
/// call it again with the same directory after dropping the first backend, so the backend must
/// release its files and locks on drop.
///
/// Closures `Fn(&Path) -> warmcache_core::Result<Arc<dyn Backend>>` are harnesses; wrap a
/// closure that also takes a capacity in [`WithCapacity`] to let the capacity check choose a small one.
pub trait Harness: Send + Sync {
    /// Opens (or reopens) the backend stored in `dir`.
    fn open(&self, dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>>;

    /// Opens the backend in `dir` bounded to `capacity` bytes, for the capacity check (which
    /// writes three times the capacity, so a small one keeps it fast), or `None` when this
    /// harness cannot size its backend: the check then uses [`open`](Self::open) and the
    /// capacity the backend declares. The default is `None`.
    fn open_with_capacity(
        &self,
        dir: &Path,
        capacity: u64,
    ) -> Option<warmcache_core::Result<Arc<dyn Backend>>> {
        let _ = (dir, capacity);
        None
    }

    /// Called after each check in `dir` (not after one that overran its bound): removes what
    /// the check left in a store that outlives `dir`, such as a remote store's namespace
    /// derived from `dir`. An error is reported on standard error, not as the check's failure
    /// (cleaning up is not what the check tests). The default does nothing (a store
    /// kept under `dir` goes with it); [`ClearedAfter`] clears the backend.
    fn teardown(&self, dir: &Path) -> warmcache_core::Result<()> {
        let _ = dir;
        Ok(())
    }
}

/// A harness (any other) whose teardown opens the backend of each check's directory again
/// and clears it: for a remote store, so a run of the suite leaves nothing on the server.
///
/// ```ignore
/// warmcache_conformance::backend_tests!(warmcache_conformance::ClearedAfter(open));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ClearedAfter<H>(pub H);

impl<H: Harness> Harness for ClearedAfter<H> {
    fn open(&self, dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
        self.0.open(dir)
    }

    fn open_with_capacity(
        &self,
        dir: &Path,
        capacity: u64,
    ) -> Option<warmcache_core::Result<Arc<dyn Backend>>> {
        self.0.open_with_capacity(dir, capacity)
    }

    fn teardown(&self, dir: &Path) -> warmcache_core::Result<()> {
        self.0.teardown(dir)?;
        let backend = self.0.open(dir)?;
        futures::executor::block_on(backend.clear())
    }
}

impl<F> Harness for F
where
    F: Fn(&Path) -> warmcache_core::Result<Arc<dyn Backend>> + Send + Sync,
{
    fn open(&self, dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
        self(dir)
    }
}

/// A harness whose backend the suite can size: the closure gets `None` (open it the way the
/// tests should use it) or `Some(capacity)` (open it bounded to that many bytes).
///
/// ```ignore
/// use warmcache_conformance::WithCapacity;
///
/// fn open(dir: &Path, capacity: Option<u64>) -> warmcache_core::Result<Arc<dyn Backend>> {
///     Ok(Arc::new(MyBackend::open(dir, capacity.unwrap_or(64 << 20))?))
/// }
///
/// warmcache_conformance::backend_tests!(WithCapacity(open));
/// ```
///
/// The guide's example backend (`tests/guide_backend.rs`) runs the suite this way.
#[derive(Debug, Clone, Copy)]
pub struct WithCapacity<F>(pub F);

/// The former name of [`WithCapacity`], kept for one release. Importing a type called `Sized`
/// shadowed the language's `Sized` trait (any `T: ?Sized` bound in the file broke), so this is
/// now a function, which shadows nothing.
#[deprecated(note = "renamed `WithCapacity`: `backend_tests!(WithCapacity(open))`")]
#[allow(non_snake_case)]
pub fn Sized<F>(open: F) -> WithCapacity<F> {
    WithCapacity(open)
}

impl<F> Harness for WithCapacity<F>
where
    F: Fn(&Path, Option<u64>) -> warmcache_core::Result<Arc<dyn Backend>> + Send + Sync,
{
    fn open(&self, dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
        (self.0)(dir, None)
    }

    fn open_with_capacity(
        &self,
        dir: &Path,
        capacity: u64,
    ) -> Option<warmcache_core::Result<Arc<dyn Backend>>> {
        Some((self.0)(dir, Some(capacity)))
    }
}

/// Expands to a module with one `#[test]` per conformance check, for the [`Harness`] given as
/// an expression (a function path or a closure; it is evaluated once per test).
///
/// `backend_tests!(open)` names the module `conformance`; `backend_tests!(name, open)` names it
/// `name`, so one crate can run the suite for several configurations of its backend.
///
/// A check that does not apply to the backend (persistence for a volatile one, files for one
/// without `local_files`) passes as a test but prints `conformance check NAME skipped: REASON`
/// to the terminal, so a skip is never mistaken for a pass. The crash test re-runs the test
/// binary as a child process, so the test target must use the default libtest harness.
#[macro_export]
macro_rules! backend_tests {
    ($harness:expr) => {
        $crate::backend_tests!(conformance, $harness);
    };
    ($module:ident, $harness:expr) => {
        #[allow(missing_docs, unused_imports)]
        mod $module {
            use super::*;

            $crate::__checks!(@list tests [$harness]);
        }
    };
}

/// The one list of checks. `@list MODE [ARGS]` hands it to the arm for MODE: `checks` defines
/// [`CHECKS`], `tests` emits one test per check.
#[doc(hidden)]
#[macro_export]
macro_rules! __checks {
    (@list $mode:ident [$($args:tt)*]) => {
        $crate::__checks!($mode [$($args)*]
            round_trip_sizes: Async,
            missing_key: Async,
            tail_matches_get: Async,
            overwrite: Async,
            fresh_reads_after_overwrite: Async,
            delete_present_and_missing: Async,
            contains: Async,
            clear: Async,
            keys_differing_in_one_byte: Async,
            list_and_usage_consistent: Async,
            list_paging_edges: Async,
            many_small_keys: Async,
            capacity_bound: Harness,
            concurrent_writers_one_key: Async,
            readers_during_overwrites: Async,
            concurrent_distinct_keys: Async,
            dropped_put_leaves_old_or_new: Async,
            driven_by_block_on: Blocking,
            driven_by_tokio: Blocking,
            open_file_matches_get: Async,
            shrink_keeps_recently_used: Async,
            pins_kept_from_eviction: Harness,
            lease_exclusive: Async,
            lease_abandoned_expires: Async,
            lease_renewal_keeps_it: Async,
            lease_released_is_gone: Async,
            lease_lasts_its_ttl: Async,
            lease_stale_holder_changes_nothing: Async,
            persistence_across_reopen: Harness,
            crash_recovery: Crash,
            front_invalidation: Async,
            front_key_echo: Async,
            front_schema_version: Async,
            front_single_flight: Blocking,
            front_corruption_recovered: Async
        );
    };
    (checks [] $($name:ident: $kind:ident),*) => {
        /// Every check, by name, in the order the [`backend_tests!`](crate::backend_tests) macro
        /// emits them.
        pub const CHECKS: &[(&str, $crate::Check)] = &[
            $((stringify!($name), $crate::__checks!(@check $kind $name))),*
        ];
    };
    (@check Async $name:ident) => {
        $crate::Check::Async(|b| Box::pin($crate::checks::$name(b)))
    };
    (@check Blocking $name:ident) => {
        $crate::Check::Blocking($crate::checks::$name)
    };
    (@check Harness $name:ident) => {
        $crate::Check::Harness($crate::checks::$name)
    };
    (@check Crash $name:ident) => {
        $crate::Check::Crash($crate::checks::$name)
    };
    (tests [$harness:expr] $($name:ident: $kind:ident),*) => {
        $(
            #[test]
            fn $name() {
                let harness = $harness;
                let test = $crate::test_name(module_path!(), stringify!($name));
                match $crate::run_test(&harness, stringify!($name), &test) {
                    Ok(verdict) => $crate::report(stringify!($name), &verdict),
                    Err(e) => panic!("conformance check {} failed: {}", stringify!($name), e),
                }
            }
        )*
    };
}
