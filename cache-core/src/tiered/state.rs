//! A tier as built into a [`Tiered`](super::Tiered): its guarded backend, writer, and what it
//! does with entries that fail verification.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::envelope::{Compression, Trust};
use crate::key::CacheKey;

use super::coordinate::HeldLease;
use super::guarded::TierShared;
use super::tier::Access;
use super::writer::{Job, Writer};

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
