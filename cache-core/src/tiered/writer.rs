//! The background writer of a slow tier: a bounded queue drained by one thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::key::CacheKey;
use crate::stats::TierCounters;

use super::tier::TierShared;

#[derive(Debug)]
pub(super) enum Job {
    Put(CacheKey, Bytes),
    Delete(CacheKey),
}

#[derive(Debug, Default)]
struct Pending {
    count: Mutex<u64>,
    idle: Condvar,
}

impl Pending {
    fn done(&self) {
        let mut count = self.count.lock();
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.idle.notify_all();
        }
    }
}

/// The sending side of a tier's queue.
#[derive(Debug)]
pub(super) struct Writer {
    sender: SyncSender<Job>,
    pending: Arc<Pending>,
}

impl Writer {
    /// Starts the worker thread for `shared` with a queue of `queue` jobs; `None` (write inline)
    /// when no thread can be started.
    pub(super) fn spawn(shared: Arc<TierShared>, queue: usize) -> Option<Self> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(queue);
        let pending = Arc::new(Pending::default());
        let worker_pending = Arc::clone(&pending);
        let spawned = std::thread::Builder::new()
            .name(format!("warmcache-writer-{}", shared.name))
            .spawn(move || work(shared, receiver, worker_pending));
        match spawned {
            Ok(_) => Some(Self { sender, pending }),
            Err(e) => {
                tracing::error!(error = %e, "could not start background writer; writing inline");
                None
            }
        }
    }

    /// Queues `job`; a full queue drops it and counts the drop.
    pub(super) fn enqueue(&self, shared: &TierShared, job: Job) {
        *self.pending.count.lock() += 1;
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.pending.done();
                TierCounters::add(&shared.counters.dropped_writes, 1);
                tracing::warn!(tier = %shared.name, "background queue full; write dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.pending.done();
                TierCounters::add(&shared.counters.write_errors, 1);
                tracing::error!(tier = %shared.name, "background writer has stopped");
            }
        }
    }

    /// Jobs queued and not yet finished.
    pub(super) fn pending(&self) -> u64 {
        *self.pending.count.lock()
    }

    /// Blocks until the queue is empty.
    pub(super) fn wait_idle(&self) {
        let mut count = self.pending.count.lock();
        while *count > 0 {
            self.pending.idle.wait(&mut count);
        }
    }
}

/// Runs queued jobs until every sender is gone (the `Tiered` was dropped), then exits.
fn work(shared: Arc<TierShared>, receiver: Receiver<Job>, pending: Arc<Pending>) {
    while let Ok(job) = receiver.recv() {
        // A panicking backend must not strand flush() callers.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.run_job(job)));
        if result.is_err() {
            TierCounters::add(&shared.counters.write_errors, 1);
            tracing::error!(tier = %shared.name, "backend panicked during a background write");
        }
        pending.done();
    }
}
