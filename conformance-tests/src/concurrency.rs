//! Behaviour under concurrent callers, and futures under different executors.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::task::noop_waker_ref;
use warmcache_core::Backend;

use crate::basic::key;
use crate::budget::Budget;
use crate::failure::{CheckResult, Failure, PASSED, ensure};
use crate::model::Model;
use crate::values;

/// The value length the concurrency checks want (cut to what the backend accepts).
const LEN: usize = 64 << 10;

async fn join_all_tasks(
    handles: Vec<tokio::task::JoinHandle<Result<(), Failure>>>,
) -> Result<(), Failure> {
    for h in handles {
        h.await
            .map_err(|e| Failure(format!("a concurrent task panicked: {e}")))??;
    }
    Ok(())
}

/// Several writers overwrite one key while readers read it: every read is exactly one complete
/// value that some writer wrote (no prefix, no mix).
pub async fn concurrent_writers_one_key(b: Arc<dyn Backend>) -> CheckResult {
    let len = Budget::of(&*b)?.len(LEN);
    let k = key(500);
    b.put(&k, values::make(99, 0, len)).await?;
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let b = Arc::clone(&b);
        writers.push(tokio::spawn(async move {
            for seq in 1..=25 {
                b.put(&k, values::make(w, seq, len)).await?;
            }
            Ok(())
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..4 {
        let b = Arc::clone(&b);
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) || reads < 10 {
                let got = b.get(&k).await?;
                let Some(got) = got else {
                    return Err(Failure("key vanished during concurrent overwrites".into()));
                };
                let id = values::identify(&got, len);
                ensure!(
                    id.is_some_and(|(w, s)| (w < 4 && (1..=25).contains(&s)) || (w, s) == (99, 0)),
                    "torn read: {} bytes that are not one complete written value",
                    got.len()
                );
                reads += 1;
                tokio::task::yield_now().await;
            }
            Ok(())
        }));
    }
    let result = join_all_tasks(writers).await;
    done.store(true, Ordering::Relaxed);
    result?;
    join_all_tasks(readers).await?;
    let last = b.get(&k).await?.unwrap_or_default();
    ensure!(
        values::identify(&last, len).is_some_and(|(_, s)| s == 25),
        "after all writers finished, the value is not one writer's last write"
    );
    PASSED
}

/// One writer overwrites a key repeatedly while many readers read it: each read is the complete
/// old or new value, and sequence numbers a reader sees never go backwards.
pub async fn readers_during_overwrites(b: Arc<dyn Backend>) -> CheckResult {
    let len = Budget::of(&*b)?.len(LEN);
    let k = key(501);
    b.put(&k, values::make(1, 0, len)).await?;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let b = Arc::clone(&b);
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let mut last_seen = 0;
            while !done.load(Ordering::Relaxed) {
                let got = b.get(&k).await?.unwrap_or_default();
                let Some((_, seq)) = values::identify(&got, len) else {
                    return Err(Failure(format!(
                        "torn read of {} bytes during overwrites",
                        got.len()
                    )));
                };
                ensure!(
                    seq >= last_seen,
                    "a reader saw sequence {seq} after {last_seen}: an older value reappeared"
                );
                last_seen = seq;
                tokio::task::yield_now().await;
            }
            Ok(())
        }));
    }
    for seq in 1..=60 {
        if let Err(e) = b.put(&k, values::make(1, seq, len)).await {
            done.store(true, Ordering::Relaxed);
            return Err(e.into());
        }
    }
    done.store(true, Ordering::Relaxed);
    join_all_tasks(readers).await?;
    PASSED
}

/// Many tasks writing and reading distinct keys see only their own values, and afterwards
/// listing and usage agree with what was written (no update of the accounting lost to a race).
pub async fn concurrent_distinct_keys(b: Arc<dyn Backend>) -> CheckResult {
    const TASKS: u64 = 8;
    let budget = Budget::of(&*b)?;
    let len = budget.len(2048);
    let per_task = budget.count(400, len).div_ceil(TASKS).min(50);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let b = Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            let mut model = Model::new(&budget);
            for i in 0..per_task {
                model.put(&b, t * 1000 + i, t, len).await?;
            }
            Ok::<_, Failure>(model)
        }));
    }
    let mut model = Model::new(&budget);
    for task in tasks {
        let part = task
            .await
            .map_err(|e| Failure(format!("a concurrent task panicked: {e}")))??;
        model.merge(part);
    }
    model
        .check(
            &b,
            &budget,
            &format!("after {TASKS} tasks each put {per_task} distinct keys at once"),
        )
        .await?;
    PASSED
}

/// The basic operations, driven by whatever executor polls this future.
pub async fn basic_ops(b: Arc<dyn Backend>) -> CheckResult {
    let budget = Budget::of(&*b)?;
    let mut model = Model::new(&budget);
    model.put(&b, 600, 1, budget.len(100_000)).await?;
    model.check(&b, &budget, "after one put").await?;
    model.delete(&b, 600).await?;
    model.check(&b, &budget, "after deleting it").await?;
    b.clear().await?;
    PASSED
}

/// Futures work when driven by `futures::executor::block_on` on a plain thread, with no Tokio
/// runtime anywhere in sight.
pub fn driven_by_block_on(b: Arc<dyn Backend>) -> CheckResult {
    let handle = std::thread::spawn(move || futures::executor::block_on(basic_ops(b)));
    handle
        .join()
        .map_err(|_| Failure("block_on thread panicked".into()))?
}

/// Futures work on a current-thread Tokio runtime as well as a multi-thread one.
pub fn driven_by_tokio(b: Arc<dyn Backend>) -> CheckResult {
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure(format!("cannot build a current-thread runtime: {e}")))?;
        rt.block_on(basic_ops(Arc::clone(&b)))?;
        crate::runner::runtime()?.block_on(basic_ops(b))
    });
    handle
        .join()
        .map_err(|_| Failure("tokio thread panicked".into()))?
}

/// A put future dropped part-way leaves the complete old or the complete new value.
///
/// A dropped put may still land later (work handed to a blocking pool runs to completion), so any
/// complete value written so far is accepted; a torn or foreign value is not.
pub async fn dropped_put_leaves_old_or_new(b: Arc<dyn Backend>) -> CheckResult {
    let len = Budget::of(&*b)?.len(LEN);
    let k = key(700);
    let mut current = 0u64;
    b.put(&k, values::make(7, current, len)).await?;
    for seq in 1..=30u64 {
        {
            let mut fut = pin!(b.put(&k, values::make(7, seq, len)));
            let mut cx = Context::from_waker(noop_waker_ref());
            // Poll a varying number of times, then drop it wherever it is.
            for _ in 0..(seq % 3) {
                if let Poll::Ready(result) = fut.as_mut().poll(&mut cx) {
                    result?;
                    break;
                }
            }
        }
        for _ in 0..3 {
            let got = b.get(&k).await?.unwrap_or_default();
            match values::identify(&got, len) {
                Some((7, s)) if s <= seq => {}
                other => {
                    return Err(Failure(format!(
                        "after dropping put #{seq}, read {:?} ({} bytes): neither old ({current}) nor new",
                        other,
                        got.len()
                    )));
                }
            }
            tokio::task::yield_now().await;
        }
        // Settle what is stored before the next round.
        b.put(&k, values::make(7, seq, len)).await?;
        current = seq;
    }
    PASSED
}
