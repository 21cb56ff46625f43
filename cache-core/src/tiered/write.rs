//! Writes: sealing an entry once per compression setting, and writing or deleting it in every
//! writable tier.

use bytes::Bytes;
use futures::future::join_all;

use crate::envelope::{Compression, Integrity, Origin};
use crate::key::CacheKey;

use super::Tiered;

/// The sealed forms of one entry, made on first use: plain, and zstd (one level per stack; the
/// first compressed tier's level is used for all, since any level decodes the same).
#[derive(Default)]
pub(super) struct SealedForms {
    plain: Option<Bytes>,
    zstd: Option<Bytes>,
}

impl SealedForms {
    /// Forms that start with the bytes as stored in a tier (plain or compressed).
    pub(super) fn from_stored(stored: Bytes, compressed: bool) -> Self {
        if compressed {
            Self {
                plain: None,
                zstd: Some(stored),
            }
        } else {
            Self {
                plain: Some(stored),
                zstd: None,
            }
        }
    }

    pub(super) fn get(
        &mut self,
        integrity: &Integrity,
        key: &CacheKey,
        origin: &Origin,
        payload: &[u8],
        compression: Compression,
    ) -> Bytes {
        let slot = match compression {
            Compression::Zstd { .. } => &mut self.zstd,
            _ => &mut self.plain,
        };
        slot.get_or_insert_with(|| integrity.seal_origin(key, origin, payload, compression))
            .clone()
    }
}

impl Tiered {
    /// Seals `payload` (once per compression setting in use) and writes it to every writable
    /// tier: inline tiers before this returns, background tiers through their queues.
    pub async fn put(&self, key: &CacheKey, origin: &Origin, payload: &[u8]) {
        let mut sealed = SealedForms::default();
        let writes = self
            .tiers
            .iter()
            .filter(|t| t.writable())
            .map(|t| {
                let bytes = sealed.get(&self.integrity, key, origin, payload, t.compression);
                t.write(key, bytes)
            })
            .collect::<Vec<_>>();
        join_all(writes).await;
    }

    /// [`put`](Self::put) for a computation that held `claim`: each lease is released once the
    /// write to its tier has landed (a background tier's by its writer, after the upload), so
    /// that whoever waits on it finds the entry.
    pub async fn put_claimed(
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
                let bytes = sealed.get(&self.integrity, key, origin, payload, t.compression);
                t.write_then_release(key, bytes, claim.take(index))
            })
            .collect::<Vec<_>>();
        join_all(writes).await;
        // Leases of tiers that were not written (none, unless read-only ones granted any).
        claim.release().await;
    }

    /// Deletes `key` from every writable tier.
    pub async fn delete(&self, key: &CacheKey) {
        join_all(
            self.tiers
                .iter()
                .filter(|t| t.writable())
                .map(|t| t.remove(key)),
        )
        .await;
    }
}
