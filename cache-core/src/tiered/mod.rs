//! [`Tiered`]: backends composed fastest first, with verification, promotion, background writes,
//! timeouts and circuit breakers.
//!
//! `tier.rs` holds a tier's public configuration, `guarded.rs` its backend under breakers,
//! timeout and counters, `state.rs` a built tier, `writer.rs` the background queue, `read.rs`
//! lookups (verify, reject, promote), `write.rs` puts and deletes, and `coordinate.rs` the
//! leases that let processes and hosts compute a key once between them.

mod coordinate;
mod guarded;
mod read;
mod state;
mod tier;
mod write;
mod writer;

use std::sync::Arc;

use crate::backend::Backend;
use crate::entry::Entry;
use crate::envelope::Integrity;
use crate::key::CacheKey;
use crate::stats::TierStats;

pub(crate) use coordinate::{Claim, Claimed};
pub use coordinate::{Coordination, OnSharedMiss};
use state::TierState;
pub use tier::{Access, DEFAULT_MIN_WRITE_RATE, DEFAULT_QUEUE_BYTES, Tier, WhenFull};

/// Backends composed fastest first.
///
/// * `get` asks tiers in order; the first entry that verifies (and is of the kind the caller
///   decodes) wins and is copied into the faster writable tiers. Entries that fail
///   verification are counted, deleted from their tier and treated as misses, before anything
///   copies them.
/// * `put` writes every writable tier: inline tiers before it returns, background tiers through
///   their queue ([`flush`](Self::flush) waits for those).
/// * A failing or slow tier never fails the caller: errors and timeouts count as misses or failed
///   writes, and after repeated failures the tier is skipped for a cool-down.
///
/// Every method is infallible by design; what went wrong is in [`stats`](Self::stats) and in
/// `tracing` events.
#[derive(Debug)]
pub struct Tiered {
    tiers: Vec<TierState>,
    integrity: Integrity,
    coordination: Coordination,
    on_shared_miss: OnSharedMiss,
    /// Who this process is, in the leases it takes.
    holder: String,
}

/// Builds a [`Tiered`].
#[derive(Debug, Default)]
pub struct TieredBuilder {
    tiers: Vec<Tier>,
    integrity: Integrity,
    coordination: Coordination,
    on_shared_miss: OnSharedMiss,
}

impl TieredBuilder {
    /// Adds a tier below the ones added so far (slower).
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tiers.push(tier);
        self
    }

    /// Sets the integrity mode (default: plain blake3 tags).
    pub fn integrity(mut self, integrity: Integrity) -> Self {
        self.integrity = integrity;
        self
    }

    /// How computations are coordinated with other processes and hosts through tiers that offer
    /// leases (default [`Coordination::new`]: on, waiting up to ten minutes).
    pub fn coordination(mut self, coordination: Coordination) -> Self {
        self.coordination = coordination;
        self
    }

    /// What the stack does when no tier has an entry and it cannot write its signed tiers
    /// (default [`OnSharedMiss::Compute`]).
    pub fn on_shared_miss(mut self, on_shared_miss: OnSharedMiss) -> Self {
        self.on_shared_miss = on_shared_miss;
        self
    }

    /// Builds the stack, starting a writer thread for each background tier.
    pub fn build(self) -> Tiered {
        let tiers = self
            .tiers
            .into_iter()
            .enumerate()
            .map(|(index, tier)| TierState::new(tier, index, &self.integrity))
            .collect();
        let tiered = Tiered {
            tiers,
            integrity: self.integrity,
            coordination: self.coordination,
            on_shared_miss: self.on_shared_miss,
            holder: coordinate::holder_name(),
        };
        let exposed = tiered.unauthenticated_shared_tiers();
        if !exposed.is_empty() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    tiers = ?exposed,
                    "shared tiers without a secret: anyone who can write them can make this \
                     process load their code; configure Integrity::from_secret"
                );
            });
        }
        tiered
    }
}

impl Tiered {
    /// Starts building a stack.
    pub fn builder() -> TieredBuilder {
        TieredBuilder::default()
    }

    /// The integrity mode entries are sealed and verified with.
    pub fn integrity(&self) -> &Integrity {
        &self.integrity
    }

    /// Names of the tiers shared with others
    /// ([`Capabilities::shared`](crate::Capabilities::shared)) whose entries are not
    /// authenticated, because no secret is configured and they are not
    /// [`signed`](Tier::signed). Plain tags detect damage, not forgery: anyone who can write
    /// such a tier can make this cache accept their entries. Building a stack with any logs a
    /// warning once per process.
    pub fn unauthenticated_shared_tiers(&self) -> Vec<&str> {
        self.tiers
            .iter()
            .filter(|t| t.is_shared && !t.authenticated)
            .map(|t| t.shared.name.as_str())
            .collect()
    }

    /// Number of tiers.
    pub fn len(&self) -> usize {
        self.tiers.len()
    }

    /// Whether there are no tiers.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// The backend of tier `index`, fastest first.
    pub fn backend(&self, index: usize) -> Option<&Arc<dyn Backend>> {
        self.tiers.get(index).map(|t| &t.shared.backend)
    }

    /// The first verified entry of `kind` for `key`, read into memory and promoted into faster
    /// writable tiers. `None` when no tier has a valid one.
    pub async fn get(&self, key: &CacheKey, kind: u32) -> Option<Entry> {
        self.read(key, kind, false).await
    }

    /// Like [`get`](Self::get), but a tier that offers local files
    /// ([`Capabilities::local_files`](crate::Capabilities::local_files)) is read through a
    /// read-only mapping of its file and verified there; the [`Entry`] then holds the open file
    /// ([`Entry::file`]), so the caller can map it again (for example with wasmtime's
    /// `Module::deserialize_open_file`) without copying it into memory.
    ///
    /// Compressed entries, and tiers without files, come back in memory. A file hit is copied
    /// into faster writable tiers only when there are any.
    pub async fn get_file(&self, key: &CacheKey, kind: u32) -> Option<Entry> {
        self.read(key, kind, true).await
    }

    /// Blocks until every background write queued before the call has finished (written,
    /// failed or timed out). Writes queued by others meanwhile are not waited for, so it returns
    /// under steady traffic too.
    ///
    /// Call it before the process exits, or queued writes to slow tiers are lost. A tier without
    /// a [`timeout`](Tier::timeout) whose backend hangs makes it wait for as long; see
    /// [`flush_within`](Self::flush_within).
    pub fn flush(&self) {
        for tier in &self.tiers {
            if let Some(writer) = &tier.writer {
                writer.wait_for(None);
            }
        }
    }

    /// Like [`flush`](Self::flush), but gives up after `timeout` overall. Returns whether every
    /// write queued before the call finished.
    pub fn flush_within(&self, timeout: std::time::Duration) -> bool {
        let deadline = writer::deadline(Some(timeout));
        self.tiers.iter().all(|tier| {
            tier.writer
                .as_ref()
                .is_none_or(|writer| writer.wait_for(deadline))
        })
    }

    /// Background writes queued and not yet finished, over all tiers.
    pub fn pending_writes(&self) -> u64 {
        self.tiers.iter().map(TierState::pending).sum()
    }

    /// Per-tier counters, fastest first.
    pub fn stats(&self) -> Vec<TierStats> {
        self.tiers
            .iter()
            .map(|t| {
                t.shared.counters.snapshot(
                    t.shared.name.clone(),
                    t.shared.backend.name().to_owned(),
                    t.shared.read_breaker.is_open(),
                    t.shared.write_breaker.is_open(),
                    t.pending(),
                )
            })
            .collect()
    }
}
