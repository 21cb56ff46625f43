//! Model-checked tests of the single-flight table under shuttle's randomized and PCT schedulers.
//!
//! Run with `cargo test -p warmcache-core --features shuttle --lib model_check`.
//! Every lock and condition variable in the table is shuttle's, so these tests explore
//! thousands of interleavings of the threads below, and fail on any deadlock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use shuttle::sync::{Arc, Mutex};
use shuttle::thread;

use super::{Join, SingleFlight, WaitOutcome};

type Outcome = Result<u32, &'static str>;

// Shuttle runs every task as a coroutine on one OS thread, so `std::thread::panicking()` is true
// for any task resumed while another unwinds, and shuttle's mutexes then report poisoning that
// real threads would not. The tests' own mutexes therefore ignore poisoning.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Compute {
    Succeed,
    Fail,
    Panic,
}

/// What [`crate::Cache`] does around the table: look in the store, else join; as leader, look
/// again, then compute, publish, store on success and only then end the flight; as waiter, take
/// the outcome or rejoin when the leader gave up. A caller that arrives between the publish and
/// the store joins the flight and takes its outcome, so it never computes again.
fn get(
    table: &SingleFlight<u32, Outcome>,
    stored: &Mutex<Option<u32>>,
    computes: &Mutex<u32>,
    key: u32,
    compute: Compute,
) -> Result<Outcome, ()> {
    if let Some(v) = *stored.lock().unwrap_or_else(|e| e.into_inner()) {
        return Ok(Ok(v));
    }
    loop {
        match table.join(&key) {
            Join::Leader(mut guard) => {
                if let Some(v) = *stored.lock().unwrap_or_else(|e| e.into_inner()) {
                    guard.complete(Ok(v));
                    return Ok(Ok(v));
                }
                *computes.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                let outcome = match compute {
                    Compute::Succeed => Ok(key * 10),
                    Compute::Fail => Err("compile error"),
                    Compute::Panic => panic!("compute panicked"),
                };
                guard.publish(outcome);
                thread::yield_now();
                if let Ok(v) = outcome {
                    *stored.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
                }
                drop(guard);
                return Ok(outcome);
            }
            Join::Waiter(waiter) => match shuttle::future::block_on(waiter.wait_async()) {
                WaitOutcome::Done(outcome) => return Ok(outcome),
                WaitOutcome::Panicked => return Err(()),
                WaitOutcome::Abandoned => continue,
            },
        }
    }
}

struct World {
    table: SingleFlight<u32, Outcome>,
    stored: Mutex<Option<u32>>,
    computes: Mutex<u32>,
}

fn world() -> Arc<World> {
    Arc::new(World {
        table: SingleFlight::new(),
        stored: Mutex::new(None),
        computes: Mutex::new(0),
    })
}

fn callers(
    w: &Arc<World>,
    n: usize,
    compute: Compute,
) -> Vec<thread::JoinHandle<Result<Outcome, ()>>> {
    (0..n)
        .map(|_| {
            let w = Arc::clone(w);
            thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    get(&w.table, &w.stored, &w.computes, 7, compute)
                }))
                .unwrap_or(Err(()))
            })
        })
        .collect()
}

fn n_callers_one_compute() {
    let w = world();
    let results: Vec<_> = callers(&w, 4, Compute::Succeed)
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(results.iter().all(|r| *r == Ok(Ok(70))), "{results:?}");
    assert_eq!(
        *w.computes.lock().unwrap_or_else(|e| e.into_inner()),
        1,
        "more than one compute ran"
    );
    assert!(w.table.len() == 0, "a flight was left in the table");
}

#[test]
fn n_callers_run_exactly_one_compute_random() {
    shuttle::check_random(n_callers_one_compute, 3000);
}

#[test]
fn n_callers_run_exactly_one_compute_pct() {
    shuttle::check_pct(n_callers_one_compute, 3000, 3);
}

fn failing_compute_releases_waiters() {
    let w = world();
    let results: Vec<_> = callers(&w, 4, Compute::Fail)
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    // Every caller gets the error (shared from a leader or its own), nothing is stored, and the
    // key is free again.
    assert!(
        results.iter().all(|r| *r == Ok(Err("compile error"))),
        "{results:?}"
    );
    assert!(
        w.stored.lock().unwrap_or_else(|e| e.into_inner()).is_none(),
        "a failure was cached"
    );
    assert!(w.table.len() == 0);
    let computes = *w.computes.lock().unwrap_or_else(|e| e.into_inner());
    assert!((1..=4).contains(&computes));
}

#[test]
fn failing_compute_releases_all_waiters() {
    shuttle::check_random(failing_compute_releases_waiters, 3000);
    shuttle::check_pct(failing_compute_releases_waiters, 2000, 3);
}

fn panicking_compute_releases_waiters() {
    let w = world();
    let results: Vec<_> = callers(&w, 3, Compute::Panic)
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    // A leader's own panic and a waiter's view of it are both Err(()) here; nobody hangs.
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    assert!(
        w.table.len() == 0,
        "the panicking flight stayed in the table"
    );
    // The key is not poisoned: a later successful compute works.
    let after = get(&w.table, &w.stored, &w.computes, 7, Compute::Succeed);
    assert_eq!(after, Ok(Ok(70)));
}

#[test]
fn panicking_compute_releases_all_waiters() {
    shuttle::check_random(panicking_compute_releases_waiters, 1000);
}

/// A leader that is dropped without completing (a cancelled future) hands the key to a waiter.
fn abandoned_leader_hands_over() {
    let w = world();
    let abandoner = {
        let w = Arc::clone(&w);
        thread::spawn(move || {
            if let Join::Leader(guard) = w.table.join(&7) {
                thread::yield_now();
                drop(guard);
            }
        })
    };
    let results: Vec<_> = callers(&w, 2, Compute::Succeed)
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    abandoner.join().unwrap();
    assert!(results.iter().all(|r| *r == Ok(Ok(70))), "{results:?}");
    assert_eq!(*w.computes.lock().unwrap_or_else(|e| e.into_inner()), 1);
    assert!(w.table.len() == 0);
}

#[test]
fn abandoned_leader_hands_the_key_over() {
    shuttle::check_random(abandoned_leader_hands_over, 3000);
}

/// While a leader of key 1 waits for something that only happens after key 2 is computed, key 2
/// must still be computable: other keys never wait on a flight. A dependency on key 1 would
/// deadlock, which shuttle reports.
fn other_keys_never_wait() {
    let table = Arc::new(SingleFlight::<u32, Outcome>::new());
    let key2_done = Arc::new((Mutex::new(false), shuttle::sync::Condvar::new()));
    let leader1 = {
        let table = Arc::clone(&table);
        let key2_done = Arc::clone(&key2_done);
        thread::spawn(move || {
            let Join::Leader(guard) = table.join(&1) else {
                panic!("first caller of key 1 is not the leader");
            };
            let (done, cv) = &*key2_done;
            let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
            while !*d {
                d = cv.wait(d).unwrap();
            }
            guard.complete(Ok(1));
        })
    };
    let other = {
        let table = Arc::clone(&table);
        let key2_done = Arc::clone(&key2_done);
        thread::spawn(move || {
            match table.join(&2) {
                Join::Leader(guard) => guard.complete(Ok(2)),
                Join::Waiter(_) => panic!("key 2 had no other caller"),
            }
            let (done, cv) = &*key2_done;
            *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        })
    };
    other.join().unwrap();
    leader1.join().unwrap();
    assert_eq!(table.len(), 0);
}

#[test]
fn other_keys_never_wait_on_a_flight() {
    shuttle::check_random(other_keys_never_wait, 3000);
    shuttle::check_pct(other_keys_never_wait, 2000, 3);
}
