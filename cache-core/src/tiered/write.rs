//! Writes: sealing an entry once per compression setting, and writing or deleting it in every
//! writable tier.

use bytes::Bytes;
use futures::future::join_all;

use crate::envelope::{Compression, EnvelopeMeta, Integrity, Origin, Trust, now_ms};
use crate::key::CacheKey;

use super::Tiered;
use super::state::TierState;

/// The sealed forms of one entry, made on first use: one per compression (plain, and zstd at
/// one level per stack: the first compressed tier's level is used for all, since any level
/// decodes the same) and per trust rule of the tiers written.
#[derive(Default)]
pub(super) struct SealedForms {
    /// An entry as found in a tier, verified: forms with its compression are made from it
    /// (re-tagged, keeping its signature and creation time) rather than sealed again.
    source: Option<(Bytes, EnvelopeMeta)>,
    forms: Vec<((bool, Trust), Bytes)>,
}

impl SealedForms {
    /// Forms made from `stored`, an entry that verified with `meta`.
    pub(super) fn from_stored(stored: Bytes, meta: EnvelopeMeta) -> Self {
        Self {
            source: Some((stored, meta)),
            forms: Vec::new(),
        }
    }

    /// The entry as a tier under `trust` with `compression` takes it.
    pub(super) fn get(
        &mut self,
        integrity: &Integrity,
        key: &CacheKey,
        origin: &Origin,
        payload: &[u8],
        (compression, trust): (Compression, Trust),
    ) -> Bytes {
        let zstd = matches!(compression, Compression::Zstd { .. });
        if let Some((_, bytes)) = self.forms.iter().find(|(form, _)| *form == (zstd, trust)) {
            return bytes.clone();
        }
        let converted = match &self.source {
            Some((stored, meta)) if meta.compressed == zstd => {
                integrity.form_for(trust, stored, meta).ok()
            }
            _ => None,
        };
        let bytes = converted.unwrap_or_else(|| {
            integrity.seal_for(trust, key, origin, now_ms(), payload, compression)
        });
        self.forms.push(((zstd, trust), bytes.clone()));
        bytes
    }
}

impl Tiered {
    /// Seals `payload` (once per compression setting in use) and writes it to every writable
    /// tier: inline tiers before this returns, background tiers through their queues.
    pub async fn put(&self, key: &CacheKey, origin: &Origin, payload: &[u8]) {
        self.put_claimed(key, origin, payload, super::Claim::none())
            .await;
    }

    /// [`put`](Self::put) for a computation that held `claim`: each lease is released once the
    /// write to its tier has landed (a background tier's by its writer, after the upload), so
    /// that whoever waits on it finds the entry.
    pub(crate) async fn put_claimed(
        &self,
        key: &CacheKey,
        origin: &Origin,
        payload: &[u8],
        mut claim: super::Claim,
    ) {
        let mut sealed = SealedForms::default();
        let writes = self
            .tiers
            .iter()
            .enumerate()
            .filter(|(_, t)| t.writable())
            .map(|(index, t)| {
                let bytes = sealed.get(&self.integrity, key, origin, payload, t.form());
                t.write(key, bytes, claim.take(index))
            })
            .collect::<Vec<_>>();
        join_all(writes).await;
        // Leases of tiers that were not written (none, unless read-only ones granted any).
        claim.release().await;
    }

    /// Deletes `key` from every writable tier.
    pub async fn delete(&self, key: &CacheKey) {
        self.delete_where(key, |_| true).await;
    }

    /// Deletes `key` from every writable tier no one else writes
    /// ([`Capabilities::shared`](crate::Capabilities::shared) false). In shared tiers an entry
    /// others may still be reading is left to the tier's own eviction.
    pub async fn delete_private(&self, key: &CacheKey) {
        self.delete_where(key, |t| !t.is_shared).await;
    }

    /// Pins `key` (or unpins it, `pinned = false`) in every writable tier that keeps pins
    /// ([`Capabilities::pins`](crate::Capabilities::pins); see
    /// [`Backend::pin`](crate::Backend::pin)): each tier's name with whether it holds the entry,
    /// or why the pin failed (such as [`Error::Capacity`](crate::Error::Capacity) when it does
    /// not fit).
    pub async fn pin(&self, key: &CacheKey, pinned: bool) -> Vec<(String, crate::Result<bool>)> {
        join_all(
            self.tiers
                .iter()
                .filter(|t| t.writable() && t.shared.backend.capabilities().pins)
                .map(|t| async move {
                    let done = t.shared.backend.pin(key, pinned).await;
                    (t.shared.name.clone(), done)
                }),
        )
        .await
    }

    async fn delete_where(&self, key: &CacheKey, which: impl Fn(&TierState) -> bool) {
        join_all(
            self.tiers
                .iter()
                .filter(|t| t.writable() && which(t))
                .map(|t| t.remove(key)),
        )
        .await;
    }
}
