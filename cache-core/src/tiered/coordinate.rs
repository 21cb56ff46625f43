//! Coordination of cold computations between processes and hosts: before computing a key, the
//! leader of a flight takes the key's lease in every tier that offers leases, fastest first,
//! waiting (bounded) while someone else holds one; the leases are released once the value has
//! been written to their tiers.
//!
//! The rules:
//!
//! 1. A lease is tried in tier order, so on one machine the processes sharing a local tier
//!    settle who goes on to the shared tier: one process per machine waits on the fleet's lease.
//! 2. After taking a lease the leader reads again (up to that tier): the previous holder may
//!    have finished between the first read and the lease.
//! 3. While a lease is held by someone else, the waiter polls it with backoff; for a shared tier
//!    it also polls for the entry itself, since a holder that died after its upload leaves its
//!    lease to expire.
//! 4. Nothing waits without bound and nothing fails for coordination: a lease that cannot be
//!    taken (an error, a timeout, an open breaker) is skipped, and a wait that runs out
//!    computes here.
//! 5. A lease is released after the write to its tier (for a background tier, by the writer,
//!    after the put), and released at once when there is nothing to write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::Lease;
use crate::entry::Entry;
use crate::key::CacheKey;

use super::Tiered;
use super::guarded::{Side, TierShared, timed};

/// How a stack coordinates the computation of one key between processes and hosts that share
/// tiers offering leases ([`Capabilities::coordinates`](crate::Capabilities::coordinates)).
/// Set with [`TieredBuilder::coordination`](super::TieredBuilder::coordination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coordination {
    enabled: bool,
    wait: Duration,
    ttl: Duration,
}

impl Coordination {
    /// How long a request waits, by default, for another's computation before computing itself.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);
    /// The default time a lease lives without renewal (the holder renews it every third).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

    /// Coordination on, with [`DEFAULT_WAIT`](Self::DEFAULT_WAIT) and
    /// [`DEFAULT_TTL`](Self::DEFAULT_TTL).
    pub const fn new() -> Self {
        Self {
            enabled: true,
            wait: Self::DEFAULT_WAIT,
            ttl: Self::DEFAULT_TTL,
        }
    }

    /// No leases: every process computes what it misses.
    pub const fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new()
        }
    }

    /// Waits at most `wait` for others' computations of one key, over all tiers, then computes
    /// here. Set it above the longest computation you expect.
    pub const fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Leases live `ttl` without renewal: how long a holder that died keeps others waiting on a
    /// store that cannot tell it died (a bucket). File locks are freed at the holder's death.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

impl Default for Coordination {
    fn default() -> Self {
        Self::new()
    }
}

/// What a stack does when no tier has an entry and it cannot write its
/// [`signed`](crate::Tier::signed) tiers (it holds no signing key: a consumer of what the
/// fleet's producers sign). Set with
/// [`TieredBuilder::on_shared_miss`](super::TieredBuilder::on_shared_miss).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnSharedMiss {
    /// Computes the value and keeps it in its other tiers (the default), counted in
    /// [`TierStats::unpublished`](crate::TierStats::unpublished) of each signed tier.
    #[default]
    Compute,
    /// Polls the signed tiers (backing off to one read a second) for at most this long, for a
    /// producer to store the entry, then computes as [`Compute`](Self::Compute) does.
    Wait(Duration),
    /// Computes nothing: the request fails with
    /// [`ComputeError::Refused`](crate::ComputeError::Refused), for hosts that must only run
    /// what the fleet's producers signed.
    Fail,
}

/// A lease this process holds on one tier.
#[derive(Debug)]
pub(super) struct HeldLease {
    lease: Box<dyn Lease>,
    shared: Arc<TierShared>,
    released: AtomicBool,
}

impl HeldLease {
    /// Releases the lease (once), under the tier's timeout; failures are counted and logged.
    pub(super) async fn release(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(failure) = timed(self.shared.timeout, self.lease.release()).await {
            self.shared.lease_failed(&failure, "release");
        }
    }

    fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

/// The leases a computation holds, by tier index. Dropping it without
/// [`release`](Self::release) abandons them: file locks are freed at once, remote leases expire.
#[derive(Debug, Default)]
pub(crate) struct Claim {
    pub(super) leases: Vec<(usize, Arc<HeldLease>)>,
}

impl Claim {
    /// A claim holding no lease.
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Releases every lease now (the computation failed, or there is nothing to store).
    pub(crate) async fn release(self) {
        for (_, lease) in &self.leases {
            lease.release().await;
        }
    }

    /// Takes the lease held on tier `index`, if any.
    pub(super) fn take(&mut self, index: usize) -> Option<Arc<HeldLease>> {
        let at = self.leases.iter().position(|(i, _)| *i == index)?;
        Some(self.leases.swap_remove(at).1)
    }
}

/// What [`Tiered::claim`] found.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// Another process or host computed the entry meanwhile: here it is, verified.
    Found(Entry),
    /// Compute it: these leases are held (possibly none), to be handed to
    /// [`Tiered::put_claimed`] or released.
    Compute(Claim),
    /// Do not compute it: the signed tiers named here have no entry, this stack cannot write
    /// them, and it is set to [`OnSharedMiss::Fail`].
    Refused(Vec<String>),
}

enum Attempt {
    Taken(Box<dyn Lease>),
    Busy,
    /// An error, a timeout, an open breaker: go on without this tier's lease.
    Unavailable,
}

/// Who holds a lease, as written into stores that record it: host and process.
pub(super) fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host} pid {}", std::process::id())
}

impl Tiered {
    /// The coordination settings.
    pub fn coordination(&self) -> Coordination {
        self.coordination
    }

    /// Before computing `key`: takes its lease in every writable tier that offers leases,
    /// waiting (at most the [`Coordination::wait`] overall) while another process or host holds
    /// one. Returns the entry when that other computation stored it meanwhile, or the leases to
    /// hand to [`put_claimed`](Self::put_claimed) (or [`Claim::release`]). Never fails: a lease
    /// that cannot be had is skipped. Then, when this stack only reads its signed tiers, does
    /// what [`OnSharedMiss`] says.
    pub(crate) async fn claim(&self, key: &CacheKey, kind: u32, files: bool) -> Claimed {
        let claim = match self.claim_leases(key, kind, files).await {
            Claimed::Compute(claim) => claim,
            other => return other,
        };
        let consumed: Vec<usize> = (0..self.tiers.len())
            .filter(|&i| self.tiers[i].consumes_only)
            .collect();
        if consumed.is_empty() {
            return Claimed::Compute(claim);
        }
        let names = || {
            consumed
                .iter()
                .map(|&i| self.tiers[i].shared.name.clone())
                .collect::<Vec<_>>()
        };
        match self.on_shared_miss {
            OnSharedMiss::Fail => {
                claim.release().await;
                tracing::warn!(%key, tiers = ?names(), "no signed entry, and this cache never computes what its signed tiers lack");
                return Claimed::Refused(names());
            }
            OnSharedMiss::Wait(limit) => {
                if let Some(entry) = self.poll_signed(key, kind, files, &consumed, limit).await {
                    claim.release().await;
                    return Claimed::Found(entry);
                }
            }
            OnSharedMiss::Compute => {}
        }
        for &i in &consumed {
            self.tiers[i].shared.counters.unpublished.add(1);
        }
        tracing::info!(%key, tiers = ?names(), "computing here: the fleet's signed tiers have no entry, and without a signing key this cache keeps what it computes to its own tiers");
        Claimed::Compute(claim)
    }

    /// Reads the signed tiers at `indices` with backoff, for at most `limit`, until one holds a
    /// verified entry for `key`.
    async fn poll_signed(
        &self,
        key: &CacheKey,
        kind: u32,
        files: bool,
        indices: &[usize],
        limit: Duration,
    ) -> Option<Entry> {
        let deadline = Instant::now() + limit;
        let mut backoff = Duration::from_millis(20);
        for &i in indices {
            self.tiers[i].shared.counters.lease_waits.add(1);
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                for &i in indices {
                    self.tiers[i].shared.counters.lease_timeouts.add(1);
                }
                tracing::warn!(%key, ?limit, "waited for the fleet's producer in vain; computing here");
                return None;
            }
            futures_timer::Delay::new(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            for &i in indices {
                if let Some(entry) = self.read_range(key, kind, files, i..=i, false).await {
                    return Some(entry);
                }
            }
        }
    }

    /// [`claim`](Self::claim)'s leases.
    async fn claim_leases(&self, key: &CacheKey, kind: u32, files: bool) -> Claimed {
        let mut claim = Claim::none();
        if !self.coordination.enabled {
            return Claimed::Compute(claim);
        }
        let deadline = Instant::now() + self.coordination.wait;
        for index in 0..self.tiers.len() {
            let tier = &self.tiers[index];
            if !tier.writable() || !tier.shared.backend.capabilities().coordinates {
                continue;
            }
            // The entry is polled too, not only the lease: a holder that stored the entry may
            // keep its lease a while (or never let go, if it is hostile).
            let poll_max = if tier.is_shared {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(100)
            };
            let mut backoff = Duration::from_millis(5);
            let mut waited = false;
            loop {
                match self.attempt(index, key).await {
                    Attempt::Taken(lease) => {
                        tier.shared.counters.leases.add(1);
                        let held = Arc::new(HeldLease {
                            lease,
                            shared: Arc::clone(&tier.shared),
                            released: AtomicBool::new(false),
                        });
                        // Renewed from now on: waiting on a slower tier's lease can take long.
                        renew_in_background(&held, self.coordination.ttl);
                        claim.leases.push((index, held));
                        // The previous holder may have stored it just before letting go.
                        if let Some(entry) =
                            self.read_range(key, kind, files, 0..=index, true).await
                        {
                            claim.release().await;
                            return Claimed::Found(entry);
                        }
                        break;
                    }
                    Attempt::Unavailable => break,
                    Attempt::Busy => {}
                }
                if !waited {
                    waited = true;
                    tier.shared.counters.lease_waits.add(1);
                    tracing::debug!(tier = %tier.shared.name, %key, "another process or host is computing this; waiting for it");
                }
                let now = Instant::now();
                if now >= deadline {
                    tier.shared.counters.lease_timeouts.add(1);
                    tracing::warn!(
                        tier = %tier.shared.name,
                        %key,
                        wait = ?self.coordination.wait,
                        "waited the whole coordination wait for another's computation; computing here"
                    );
                    return Claimed::Compute(claim);
                }
                futures_timer::Delay::new(backoff.min(deadline - now)).await;
                backoff = (backoff * 2).min(poll_max);
                if let Some(entry) = self.read_range(key, kind, files, index..=index, true).await {
                    claim.release().await;
                    return Claimed::Found(entry);
                }
            }
        }
        Claimed::Compute(claim)
    }

    async fn attempt(&self, index: usize, key: &CacheKey) -> Attempt {
        let shared = &self.tiers[index].shared;
        let ttl = self.coordination.ttl;
        let try_lease = shared.backend.try_lease(key, ttl, &self.holder);
        match shared
            .guarded(Side::Lease, shared.timeout, "acquire", key, try_lease)
            .await
        {
            Ok(Some(lease)) => Attempt::Taken(lease),
            Ok(None) => Attempt::Busy,
            Err(_) => Attempt::Unavailable,
        }
    }
}

/// Renews `held` on a thread of its own, if it needs renewal, until it is released or
/// abandoned (nobody but the renewer holds it any more).
fn renew_in_background(held: &Arc<HeldLease>, ttl: Duration) {
    let Some(every) = held.lease.renew_every() else {
        return;
    };
    let every = every.clamp(
        Duration::from_millis(10),
        ttl.max(Duration::from_millis(10)),
    );
    let held = Arc::clone(held);
    let spawned = std::thread::Builder::new()
        .name("warmcache-lease-renewer".to_owned())
        .spawn(move || renew_until_done(&held, every));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the lease renewer; the lease may expire during a long computation");
    }
}

fn renew_until_done(held: &Arc<HeldLease>, every: Duration) {
    const STEP: Duration = Duration::from_millis(50);
    let mut next = Instant::now() + every;
    while !held.is_released() && Arc::strong_count(held) > 1 {
        if Instant::now() >= next {
            let renewal = timed(held.shared.timeout, held.lease.renew());
            if let Err(failure) = futures::executor::block_on(renewal) {
                held.shared.lease_failed(&failure, "renew");
            }
            next = Instant::now() + every;
        }
        std::thread::sleep(STEP.min(every));
    }
}
