//! The background writer of a slow tier: a queue bounded by jobs and bytes, drained in order by
//! one thread.
//!
//! Every accepted job gets a ticket (its position in the queue's history); the worker counts
//! the tickets it finished. That makes [`Writer::wait_for`] exact: it waits for the jobs
//! accepted before the call, not for the queue to become empty, which under steady traffic may
//! never happen.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::key::CacheKey;

use super::coordinate::HeldLease;
use super::guarded::TierShared;
use super::tier::WhenFull;

#[derive(Debug)]
pub(super) enum Job {
    /// A put, and the lease to release once it has landed (or failed).
    Put(CacheKey, Bytes, Option<Arc<HeldLease>>),
    Delete(CacheKey),
}

impl Job {
    fn bytes(&self) -> u64 {
        match self {
            Job::Put(_, value, _) => value.len() as u64,
            Job::Delete(_) => 0,
        }
    }

    /// The lease riding on this job, handed back when the job is not queued.
    fn into_lease(self) -> Option<Arc<HeldLease>> {
        match self {
            Job::Put(_, _, lease) => lease,
            Job::Delete(_) => None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Tickets handed out to accepted jobs.
    accepted: u64,
    /// Jobs finished by the worker, in ticket order.
    finished: u64,
    /// Bytes of accepted, unfinished jobs (queued or running).
    bytes: u64,
    /// The worker thread has exited: nothing more will be finished.
    stopped: bool,
    /// The `Writer` was dropped: the worker exits once the queue is empty.
    closing: bool,
}

impl State {
    fn unfinished(&self) -> u64 {
        self.accepted - self.finished
    }
}

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<State>,
    /// Signalled when a job is queued or the writer closes.
    work: Condvar,
    /// Signalled when a job finishes (room for waiting senders, progress for flushes).
    progress: Condvar,
}

/// Limits of a background queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueueLimits {
    pub(super) jobs: usize,
    pub(super) bytes: u64,
    pub(super) when_full: WhenFull,
}

/// The sending side of a tier's queue. Dropping it lets the worker finish what is queued, then
/// exit.
#[derive(Debug)]
pub(super) struct Writer {
    queue: Arc<Queue>,
    limits: QueueLimits,
}

impl Writer {
    /// Starts the worker thread for `shared`; `None` (write inline) when no thread can be
    /// started.
    pub(super) fn spawn(shared: Arc<TierShared>, limits: QueueLimits) -> Option<Self> {
        let queue = Arc::new(Queue::default());
        let worker_queue = Arc::clone(&queue);
        let spawned = std::thread::Builder::new()
            .name(format!("warmcache-writer-{}", shared.name))
            .spawn(move || work(&shared, &worker_queue));
        match spawned {
            Ok(_) => Some(Self { queue, limits }),
            Err(e) => {
                tracing::error!(error = %e, "could not start background writer; writing inline");
                None
            }
        }
    }

    /// Whether `job` fits now. A job larger than the byte bound fits an empty queue, or it could
    /// never be written.
    fn fits(&self, state: &State, job_bytes: u64) -> bool {
        let unfinished = state.unfinished();
        unfinished == 0
            || (unfinished < self.limits.jobs as u64
                && state.bytes.saturating_add(job_bytes) <= self.limits.bytes)
    }

    /// Queues `job`. When the queue is full (by jobs or bytes) the job is dropped and counted,
    /// or, with [`WhenFull::Wait`], the calling thread waits for room. A job that is not queued
    /// hands back its lease, for the caller to release.
    #[must_use]
    pub(super) fn enqueue(&self, shared: &TierShared, job: Job) -> Option<Arc<HeldLease>> {
        let job_bytes = job.bytes();
        let mut state = self.queue.state.lock();
        loop {
            if state.stopped {
                drop(state);
                shared.counters.write_errors.add(1);
                tracing::error!(tier = %shared.name, "background writer has stopped; write lost");
                return job.into_lease();
            }
            if self.fits(&state, job_bytes) {
                break;
            }
            match self.limits.when_full {
                WhenFull::Drop => {
                    drop(state);
                    shared.counters.dropped_writes.add(1);
                    tracing::warn!(tier = %shared.name, "background queue full; write dropped");
                    return job.into_lease();
                }
                WhenFull::Wait => self.queue.progress.wait(&mut state),
            }
        }
        state.accepted += 1;
        state.bytes += job_bytes;
        state.jobs.push_back(job);
        shared.counters.set_pending(state.unfinished());
        drop(state);
        self.queue.work.notify_one();
        None
    }

    /// Jobs accepted and not yet finished.
    pub(super) fn pending(&self) -> u64 {
        self.queue.state.lock().unfinished()
    }

    /// Blocks until every job accepted before the call has finished, or `deadline` passes.
    /// Returns whether they all finished.
    pub(super) fn wait_for(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.queue.state.lock();
        let target = state.accepted;
        while state.finished < target && !state.stopped {
            match deadline {
                None => self.queue.progress.wait(&mut state),
                Some(at) => {
                    if self.queue.progress.wait_until(&mut state, at).timed_out() {
                        return state.finished >= target;
                    }
                }
            }
        }
        state.finished >= target
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.state.lock().closing = true;
        self.queue.work.notify_all();
    }
}

/// Runs queued jobs in order until the writer is dropped and the queue is empty.
fn work(shared: &TierShared, queue: &Queue) {
    loop {
        let job = {
            let mut state = queue.state.lock();
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break job;
                }
                if state.closing {
                    state.stopped = true;
                    drop(state);
                    queue.progress.notify_all();
                    return;
                }
                queue.work.wait(&mut state);
            }
        };
        let job_bytes = job.bytes();
        // A panicking backend must not strand flush() callers or waiting senders.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(shared, job)));
        if result.is_err() {
            shared.counters.write_errors.add(1);
            tracing::error!(tier = %shared.name, "backend panicked during a background write");
        }
        let mut state = queue.state.lock();
        state.finished += 1;
        state.bytes = state.bytes.saturating_sub(job_bytes);
        shared.counters.set_pending(state.unfinished());
        drop(state);
        queue.progress.notify_all();
    }
}

/// Runs one job on `shared`, releasing a put's lease after it.
fn run(shared: &TierShared, job: Job) {
    match job {
        Job::Put(key, value, lease) => futures::executor::block_on(async {
            shared.put(&key, value).await;
            if let Some(lease) = lease {
                lease.release().await;
            }
        }),
        Job::Delete(key) => futures::executor::block_on(shared.delete(&key)),
    }
}

/// How long [`Writer::wait_for`] may wait, as a deadline.
pub(super) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}
