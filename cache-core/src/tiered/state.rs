//! A tier as built into a [`Tiered`](super::Tiered): its guarded backend, writer, and what it
//! does with entries that fail verification.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::breaker::Breaker;
use crate::envelope::{Compression, Integrity, Trust};
use crate::files::VerifiedFiles;
use crate::key::CacheKey;
use crate::stats::TierCounters;

use super::coordinate::HeldLease;
use super::guarded::TierShared;
use super::tier::{Access, Tier, WriteMode};
use super::writer::{Job, QueueLimits, Writer};

/// Most keys remembered per shared tier as holding an entry this cache could not verify.
const FOREIGN_MEMORY: usize = 4096;

/// What a cache does with an entry that failed verification on a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unverified {
    /// Deletes it: a private tier, or the namespace of this cache's own secret.
    Delete,
    /// Keeps it until this cache writes the key: a signed tier this cache signs for.
    Replace,
    /// Never touches it: a tier shared with caches that may hold other secrets, or a signed
    /// tier this cache cannot write.
    LeaveAlone,
}

/// A tier as built into a [`Tiered`](super::Tiered).
#[derive(Debug)]
pub(super) struct TierState {
    pub(super) shared: Arc<TierShared>,
    pub(super) access: Access,
    pub(super) compression: Compression,
    pub(super) writer: Option<Writer>,
    /// The backend is shared with other caches ([`Capabilities::shared`](crate::Capabilities)).
    pub(super) is_shared: bool,
    /// The rule its entries meet ([`Tier::signed`]).
    pub(super) trust: Trust,
    /// Its entries are authenticated (by a secret or a signature), not only checked for damage.
    pub(super) authenticated: bool,
    /// Signed, and this cache holds no key to write it: what it computes stays elsewhere.
    pub(super) consumes_only: bool,
    pub(super) unverified: Unverified,
    /// Keys whose entry in this shared tier failed verification here: another node's (sealed
    /// under another secret) or an attacker's. Never deleted by this cache.
    pub(super) foreign: Mutex<HashSet<CacheKey>>,
}

impl TierState {
    /// Builds `tier`, at `index` in a stack sealing and verifying with `integrity`, starting its
    /// writer thread if it writes in the background.
    pub(super) fn new(t: Tier, index: usize, integrity: &Integrity) -> Self {
        let name = t
            .name
            .unwrap_or_else(|| format!("{index}:{}", t.backend.name()));
        let is_shared = t.backend.capabilities().shared;
        let signed = t.trust == Trust::Signature;
        let can_sign = integrity.can_sign();
        let unverified = match (signed, can_sign) {
            (true, true) => Unverified::Replace,
            (true, false) => Unverified::LeaveAlone,
            _ if is_shared && !(t.own_namespace && integrity.is_keyed()) => Unverified::LeaveAlone,
            _ => Unverified::Delete,
        };
        let consumes_only = signed && !can_sign;
        let access = if consumes_only {
            Access::ReadOnly
        } else {
            t.access
        };
        if signed && integrity.trusted_keys().is_empty() {
            tracing::warn!(
                tier = %name,
                "a signed tier but no trusted key: every entry on it will be refused \
                 (configure Integrity::trusting or Integrity::signing)"
            );
        }
        let labels = crate::metrics::tier_labels(&name, t.backend.name());
        let verified_files = verified_files(
            &name,
            t.verified_files,
            is_shared,
            t.sealed_copies || signed,
        );
        let shared = Arc::new(TierShared {
            backend: t.backend,
            name,
            timeout: t.timeout,
            min_write_rate: t.min_write_rate,
            verified_files,
            sealed_copies: t.sealed_copies,
            counters: TierCounters::new(&labels),
            read_breaker: Breaker::new(t.breaker_threshold, t.breaker_cooldown).exported(
                crate::metrics::Level::new("warmcache_tier_breaker_open", &labels),
            ),
            write_breaker: Breaker::new(t.breaker_threshold, t.breaker_cooldown).exported(
                crate::metrics::Level::new("warmcache_tier_write_breaker_open", &labels),
            ),
        });
        let writer = match (access, t.write) {
            (
                Access::ReadWrite,
                WriteMode::Background {
                    queue,
                    max_bytes,
                    when_full,
                },
            ) => {
                let limits = QueueLimits {
                    jobs: queue,
                    bytes: max_bytes,
                    when_full,
                };
                Writer::spawn(Arc::clone(&shared), limits)
            }
            _ => None,
        };
        TierState {
            shared,
            access,
            compression: t.compression,
            writer,
            is_shared,
            trust: t.trust,
            authenticated: signed || integrity.is_keyed(),
            consumes_only,
            unverified,
            foreign: Mutex::default(),
        }
    }

    pub(super) fn writable(&self) -> bool {
        self.access == Access::ReadWrite
    }

    /// What an entry written here looks like: its compression and the rule it meets.
    pub(super) fn form(&self) -> (Compression, Trust) {
        (self.compression, self.trust)
    }

    /// Whether this cache may delete what the tier holds for `key` after it failed
    /// verification: yes for a private tier, never for a shared one, where it may be another
    /// node's entry under another secret.
    pub(super) fn remember_unverified(&self, key: &CacheKey) -> bool {
        if self.unverified == Unverified::Delete {
            return true;
        }
        let mut foreign = self.foreign.lock();
        if foreign.len() >= FOREIGN_MEMORY {
            foreign.clear();
        }
        foreign.insert(*key);
        false
    }

    /// Whether this shared tier's entry for `key` failed verification here.
    pub(super) fn is_foreign(&self, key: &CacheKey) -> bool {
        self.unverified != Unverified::Delete && self.foreign.lock().contains(key)
    }

    /// Forgets `key` as foreign (it verified since, or this cache replaced it).
    pub(super) fn verified(&self, key: &CacheKey) {
        if self.unverified != Unverified::Delete {
            self.foreign.lock().remove(key);
        }
    }

    /// Writes inline or enqueues, and returns once the write is done or queued; then releases
    /// `lease` once the write has landed, failed or been dropped (for a background tier, the
    /// writer releases it after the put). A shared tier's entry that failed verification here is
    /// never overwritten.
    pub(super) async fn write(&self, key: &CacheKey, value: Bytes, lease: Option<Arc<HeldLease>>) {
        if self.unverified == Unverified::Replace {
            self.verified(key);
        }
        let unsent = if self.is_foreign(key) {
            self.shared.counters.skipped.add(1);
            tracing::debug!(tier = %self.shared.name, %key, "not overwriting an entry this cache cannot verify");
            lease
        } else {
            match &self.writer {
                Some(writer) => writer.enqueue(&self.shared, Job::Put(*key, value, lease)),
                None => {
                    self.shared.put(key, value).await;
                    lease
                }
            }
        };
        if let Some(lease) = unsent {
            lease.release().await;
        }
    }

    pub(super) async fn remove(&self, key: &CacheKey) {
        match &self.writer {
            Some(writer) => {
                // A delete carries no lease, so nothing comes back.
                let _ = writer.enqueue(&self.shared, Job::Delete(*key));
            }
            None => self.shared.delete(key).await,
        }
    }

    pub(super) fn pending(&self) -> u64 {
        self.writer.as_ref().map_or(0, Writer::pending)
    }
}

/// The verified-file records a tier may use. Skipping the hash of an unchanged file relies on
/// nobody else being able to write it (the trust rule): not where others can write the tier,
/// nor where every load is a sealed copy or must carry a signature anyway.
fn verified_files(
    name: &str,
    configured: Option<Arc<VerifiedFiles>>,
    is_shared: bool,
    verified_anyway: bool,
) -> Option<Arc<VerifiedFiles>> {
    let configured = configured?;
    if is_shared {
        tracing::warn!(
            tier = %name,
            "others can write this tier: every load is verified in full (verified-file records \
             are only used on a tier only this user can write)"
        );
        return None;
    }
    (!verified_anyway).then_some(configured)
}
