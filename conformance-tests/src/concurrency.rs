//! Behaviour under concurrent callers, and futures under different executors.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::task::noop_waker_ref;
use warmcache_core::Backend;

use crate::basic::key;
use crate::failure::{CheckResult, Failure, PASSED, ensure};
use crate::values;

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
    let k = key(500);
    b.put(&k, values::make(99, 0, LEN)).await?;
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let b = Arc::clone(&b);
        writers.push(tokio::spawn(async move {
            for seq in 1..=25 {
                b.put(&k, values::make(w, seq, LEN)).await?;
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
                let id = values::identify(&got, LEN);
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
        values::identify(&last, LEN).is_some_and(|(_, s)| s == 25),
        "after all writers finished, the value is not one writer's last write"
    );
    PASSED
}

/// One writer overwrites a key repeatedly while many readers read it: each read is the complete
/// old or new value, and sequence numbers a reader sees never go backwards.
pub async fn readers_during_overwrites(b: Arc<dyn Backend>) -> CheckResult {
    let k = key(501);
    b.put(&k, values::make(1, 0, LEN)).await?;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let b = Arc::clone(&b);
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let mut last_seen = 0;
            while !done.load(Ordering::Relaxed) {
                let got = b.get(&k).await?.unwrap_or_default();
                let Some((_, seq)) = values::identify(&got, LEN) else {
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
        if let Err(e) = b.put(&k, values::make(1, seq, LEN)).await {
            done.store(true, Ordering::Relaxed);
            return Err(e.into());
        }
    }
    done.store(true, Ordering::Relaxed);
    join_all_tasks(readers).await?;
    PASSED
}

/// Many tasks writing and reading distinct keys see only their own values.
pub async fn concurrent_distinct_keys(b: Arc<dyn Backend>) -> CheckResult {
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let b = Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                let n = t * 1000 + i;
                b.put(&key(n), values::make(n, t, 2048)).await?;
                let got = b.get(&key(n)).await?.unwrap_or_default();
                ensure!(
                    values::identify(&got, 2048) == Some((n, t)),
                    "task {t} read back a wrong value for its own key {n}"
                );
            }
            Ok(())
        }));
    }
    join_all_tasks(tasks).await?;
    let listed: HashSet<_> = warmcache_core::BackendExt::list_all(&*b)
        .await?
        .into_iter()
        .map(|e| e.key)
        .collect();
    ensure!(
        listed.len() == 400,
        "{} keys listed after 400 distinct puts",
        listed.len()
    );
    PASSED
}

/// The basic operations, driven by whatever executor polls this future.
pub async fn basic_ops(b: Arc<dyn Backend>) -> CheckResult {
    let k = key(600);
    ensure!(b.get(&k).await?.is_none(), "fresh key present");
    b.put(&k, values::make(6, 1, 100_000)).await?;
    let got = b.get(&k).await?.unwrap_or_default();
    ensure!(
        values::identify(&got, 100_000) == Some((6, 1)),
        "round trip failed"
    );
    ensure!(b.contains(&k).await?, "contains false after put");
    ensure!(b.usage().await?.entries == 1, "usage wrong");
    ensure!(b.list(None, 10).await?.entries.len() == 1, "list wrong");
    b.delete(&k).await?;
    ensure!(!b.contains(&k).await?, "contains true after delete");
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failure(format!("cannot build a multi-thread runtime: {e}")))?;
        rt.block_on(basic_ops(b))
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
    let k = key(700);
    let mut current = 0u64;
    b.put(&k, values::make(7, current, LEN)).await?;
    for seq in 1..=30u64 {
        {
            let mut fut = pin!(b.put(&k, values::make(7, seq, LEN)));
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
            match values::identify(&got, LEN) {
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
        b.put(&k, values::make(7, seq, LEN)).await?;
        current = seq;
    }
    PASSED
}
