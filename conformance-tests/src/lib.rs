//! The behaviour every warmcache [`Backend`] must show, as tests.
//!
//! A backend author writes a [`Harness`] (how to open the backend in a directory) and calls
//! [`backend_tests!`] once; the macro expands to a module with one named `#[test]` per behaviour:
//! round trips from 0 B to 32 MiB, missing keys, overwrite, delete, clear, paged listing and
//! usage, 10,000 keys, concurrent writers and readers without torn values, the capacity bound,
//! futures under `block_on` and under Tokio, dropped futures, persistence across reopen, a crash
//! test that SIGKILLs a writer process mid-write, and the [`Cache`](warmcache_core::Cache) front
//! over the backend (invalidation, key echo, schema versions, single-flight, corruption).
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
//! # use warmcache_core::{Backend, bytes::Bytes, CacheKey, Capabilities, ListPage, Usage, Result, KeyInfo, page_from_sorted};
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
//! assert!(outcome.is_ok(), "{outcome:?}");
//! ```

use std::path::Path;
use std::sync::Arc;

use warmcache_core::Backend;

mod basic;
mod concurrency;
mod failure;
mod faults;
mod front;
pub mod maintenance;
mod persistence;
mod runner;
mod values;

pub use failure::{CheckResult, Failure};
pub use faults::{CorruptingBackend, FaultConfig, FaultyBackend};
pub use runner::{CHECKS, Check, crash_test, run, run_all, run_named, test_name};

/// The checks as public functions, for running them outside the macro.
pub mod checks {
    pub use crate::basic::{
        capacity_bound, clear, contains, delete_present_and_missing, key,
        list_and_usage_consistent, many_small_keys, missing_key, overwrite, round_trip_sizes,
    };
    pub use crate::concurrency::{
        basic_ops, concurrent_distinct_keys, concurrent_writers_one_key, driven_by_block_on,
        driven_by_tokio, dropped_put_leaves_old_or_new, readers_during_overwrites,
    };
    pub use crate::front::{
        front_corruption_recovered, front_invalidation, front_key_echo, front_schema_version,
        front_single_flight,
    };
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
/// Closures `Fn(&Path) -> warmcache_core::Result<Arc<dyn Backend>>` are harnesses.
pub trait Harness: Send + Sync {
    /// Opens (or reopens) the backend stored in `dir`.
    fn open(&self, dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>>;
}

impl<F> Harness for F
where
    F: Fn(&Path) -> warmcache_core::Result<Arc<dyn Backend>> + Send + Sync,
{
    fn open(&self, dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
        self(dir)
    }
}

/// Expands to `mod conformance` with one `#[test]` per conformance check, for the [`Harness`]
/// given as an expression (a function path or a closure; it is evaluated once per test).
#[macro_export]
macro_rules! backend_tests {
    ($harness:expr) => {
        #[allow(missing_docs, unused_imports)]
        mod conformance {
            use super::*;

            $crate::__backend_tests!(
                $harness;
                round_trip_sizes,
                missing_key,
                overwrite,
                delete_present_and_missing,
                contains,
                clear,
                list_and_usage_consistent,
                many_small_keys,
                capacity_bound,
                concurrent_writers_one_key,
                readers_during_overwrites,
                concurrent_distinct_keys,
                dropped_put_leaves_old_or_new,
                driven_by_block_on,
                driven_by_tokio,
                persistence_across_reopen,
                front_invalidation,
                front_key_echo,
                front_schema_version,
                front_single_flight,
                front_corruption_recovered
            );

            #[test]
            fn crash_recovery() {
                let harness = $harness;
                let name = $crate::test_name(module_path!(), "crash_recovery");
                if let Err(e) = $crate::crash_test(&harness, &name) {
                    panic!("conformance check crash_recovery failed: {e}");
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __backend_tests {
    ($harness:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let harness = $harness;
                if let Err(e) = $crate::run_named(&harness, stringify!($name)) {
                    panic!("conformance check {} failed: {}", stringify!($name), e);
                }
            }
        )*

        #[test]
        fn every_check_has_a_test() {
            let listed = [$(stringify!($name)),*];
            let known: Vec<&str> = $crate::CHECKS.iter().map(|(n, _)| *n).collect();
            assert_eq!(listed.as_slice(), known.as_slice());
        }
    };
}
