//! Reads: each tier under its breaker and timeout, verification, rejection of bad entries, and
//! promotion of a hit into the faster tiers.

use std::future::Future;

use bytes::Bytes;
use futures::future::join_all;

use crate::entry::Entry;
use crate::envelope::VerifyError;
use crate::error::{Context, Error, Op};
use crate::key::CacheKey;
use crate::mapped::{self, MapError};

use super::Tiered;
use super::guarded::{Refused, Side, TierFailure};
use super::write::SealedForms;

/// What [`Tiered::open_entry_file`] found.
enum EntryFile {
    Open(std::fs::File),
    Nothing,
    /// Read the entry as bytes instead.
    ReadBytes,
}

/// What one read of a tier gave.
enum Fetched<T> {
    Value(T),
    /// A miss, an error, a timeout or an open breaker (all counted).
    Nothing,
    /// The backend does not offer the operation.
    NotSupported,
}

impl Tiered {
    /// The first entry of `kind` that verifies, from any tier, fastest first; read through a
    /// file mapping where `files` and the tier offers files.
    pub(super) async fn read(&self, key: &CacheKey, kind: u32, files: bool) -> Option<Entry> {
        self.read_range(
            key,
            kind,
            files,
            0..=self.tiers.len().saturating_sub(1),
            false,
        )
        .await
    }

    /// [`read`](Self::read) over the tiers in `range` only. With `again`, a read that follows
    /// one that just failed: shared tiers whose entry for `key` failed verification here are
    /// skipped, since this cache never replaces that entry (and would only count it again).
    pub(super) async fn read_range(
        &self,
        key: &CacheKey,
        kind: u32,
        files: bool,
        range: std::ops::RangeInclusive<usize>,
        again: bool,
    ) -> Option<Entry> {
        for index in range {
            let tier = self.tiers.get(index)?;
            if again && tier.is_foreign(key) {
                continue;
            }
            // Without a key, a tier's entry is trusted only as a file only this user can have
            // written, which a tier with local files proves by handing it out (the trust rule,
            // docs/DESIGN.md "Trust"): such a tier is always read through its files.
            let local_files = tier.shared.backend.capabilities().local_files;
            let found = if local_files && (files || !tier.authenticated) {
                self.read_file(index, key, kind).await
            } else {
                self.read_bytes(index, key, kind).await
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Runs one read on tier `index` under its breaker and timeout, counting skips, misses,
    /// errors and latency. A backend without the operation is reported, not counted.
    async fn fetch<T, F>(&self, index: usize, key: &CacheKey, op: &str, read: F) -> Fetched<T>
    where
        F: Future<Output = Result<Option<T>, Error>>,
    {
        let shared = &self.tiers[index].shared;
        match shared
            .guarded(Side::Read, shared.timeout, op, key, read)
            .await
        {
            Ok(Some(value)) => Fetched::Value(value),
            Ok(None) => {
                shared.counters.misses.add(1);
                Fetched::Nothing
            }
            Err(Refused::NotSupported) => Fetched::NotSupported,
            Err(Refused::Skipped | Refused::Failed) => Fetched::Nothing,
        }
    }

    /// Reads tier `index` as bytes; `Some` on a verified hit.
    async fn read_bytes(&self, index: usize, key: &CacheKey, kind: u32) -> Option<Entry> {
        let backend = &self.tiers[index].shared.backend;
        let Fetched::Value(bytes) = self.fetch(index, key, "get", backend.get(key)).await else {
            return None;
        };
        match self
            .integrity
            .open_for(self.tiers[index].trust, key, Some(kind), &bytes)
        {
            Ok(entry) => {
                self.tiers[index].verified(key);
                self.count_hit(index, bytes.len());
                self.promote(key, &bytes, &entry, index).await;
                Some(entry.at_tier(index))
            }
            Err(e) => {
                self.reject(index, key, &e).await;
                None
            }
        }
    }

    /// Reads tier `index` through its local file. An entry the backend will not hand out as a
    /// file (one that someone else could have written) is read as a verified copy when entries
    /// are authenticated by a key, and is a miss without one: a plain tag proves "undamaged",
    /// never "written by this user".
    async fn read_file(&self, index: usize, key: &CacheKey, kind: u32) -> Option<Entry> {
        let file = match self.open_entry_file(index, key).await {
            EntryFile::Open(file) => file,
            EntryFile::Nothing => return None,
            EntryFile::ReadBytes => return self.read_bytes(index, key, kind).await,
        };
        let mapped = self.map_verified(index, key, kind, &file).await?;
        self.count_hit(index, mapped.map.len());
        let has_faster_writable = self.tiers[..index].iter().any(|t| t.writable());
        if mapped.meta.compressed || has_faster_writable {
            // Promotion (and decompression) need the stored bytes in memory.
            let stored = Bytes::copy_from_slice(&mapped.map);
            // Verified through the mapping above; the copy is not hashed again.
            let entry = match crate::envelope::entry_of(
                mapped.meta.clone(),
                &stored,
                mapped.payload.clone(),
            ) {
                Ok(entry) => entry,
                Err(e) => {
                    self.reject(index, key, &e).await;
                    return None;
                }
            };
            self.promote(key, &stored, &entry, index).await;
            if mapped.meta.compressed {
                return Some(entry.at_tier(index));
            }
        }
        Some(Entry::from_file(mapped.meta, file, mapped.map, mapped.payload).at_tier(index))
    }

    /// The entry file of tier `index` for `key`: as the backend hands it out, or a sealed copy
    /// of it when the tier asks for those.
    async fn open_entry_file(&self, index: usize, key: &CacheKey) -> EntryFile {
        let shared = &self.tiers[index].shared;
        let file = match self
            .fetch(index, key, "open_file", shared.backend.open_file(key))
            .await
        {
            Fetched::Value(file) => file,
            Fetched::Nothing => return EntryFile::Nothing,
            Fetched::NotSupported if self.tiers[index].authenticated => {
                return EntryFile::ReadBytes;
            }
            Fetched::NotSupported => {
                shared.counters.misses.add(1);
                shared.counters.forged.add(1);
                tracing::warn!(
                    tier = %shared.name,
                    %key,
                    "entry file could have been written by another user and no secret \
                     authenticates it: not used (configure a secret to share entries between users)"
                );
                return EntryFile::Nothing;
            }
        };
        if !shared.sealed_copies {
            return EntryFile::Open(file);
        }
        match crate::files::sealed_copy(&file) {
            Ok(copy) => EntryFile::Open(copy),
            Err(e) => {
                // Off Linux, or out of memory for the copy: a verified copy in memory.
                tracing::debug!(tier = %shared.name, %key, error = %e, "no sealed copy; reading the entry instead");
                EntryFile::ReadBytes
            }
        }
    }

    /// Maps `file` and verifies it (in full, unless its verified-file record says it is
    /// unchanged since it last verified); rejects it, or counts the failure, when that fails.
    async fn map_verified(
        &self,
        index: usize,
        key: &CacheKey,
        kind: u32,
        file: &std::fs::File,
    ) -> Option<mapped::MappedEntry> {
        let shared = &self.tiers[index].shared;
        let verified = shared.verified_files.as_deref();
        let key_id = verified
            .map(|_| self.integrity.key_id())
            .unwrap_or_default();
        let unchanged = verified.is_some_and(|v| v.is_verified(key, &key_id, file));
        let before = match verified {
            Some(_) if !unchanged => crate::files::FileIdentity::of(file).ok().flatten(),
            _ => None,
        };
        let trust = self.tiers[index].trust;
        match mapped::map_and_verify(&self.integrity, trust, key, kind, file, unchanged) {
            Ok(mapped) => {
                if unchanged {
                    shared.counters.trusted_loads.add(1);
                } else if let Some(verified) = verified
                    && !mapped.meta.by_previous_key
                {
                    // Only what the current secret sealed: a later unhashed load takes it so.
                    verified.record(key, &key_id, file, before);
                }
                Some(mapped)
            }
            Err(MapError::Verify(e)) => {
                self.reject(index, key, &e).await;
                None
            }
            Err(MapError::Io(e)) => {
                let failure = TierFailure::Error(Error::Io {
                    context: Context::with_key(shared.backend.name(), Op::OpenFile, key),
                    source: e,
                });
                shared.read_failed(&failure, "map", key);
                None
            }
        }
    }

    fn count_hit(&self, index: usize, stored_len: usize) {
        let counters = &self.tiers[index].shared.counters;
        counters.hits.add(1);
        counters.bytes_read.add(stored_len as u64);
    }

    /// Counts an entry that failed verification and removes it from a writable private tier; a
    /// shared tier's is skipped and left alone (see [`TierState::remember_unverified`]).
    async fn reject(&self, index: usize, key: &CacheKey, error: &VerifyError) {
        let tier = &self.tiers[index];
        let counters = &tier.shared.counters;
        counters.misses.add(1);
        if error.is_forgery() {
            counters.forged.add(1);
        } else {
            counters.corrupt.add(1);
        }
        tracing::warn!(tier = %tier.shared.name, %key, %error, "entry failed verification");
        if tier.remember_unverified(key) && tier.writable() {
            tier.remove(key).await;
        }
    }

    /// Copies a verified hit from tier `found_at` into the faster writable tiers, reusing the
    /// stored bytes where the target's compression matches, re-tagged as the target's rule
    /// needs (with the current MAC, when a previous secret or a signed tier's plain tag had
    /// them); a signature is kept.
    async fn promote(&self, key: &CacheKey, stored: &Bytes, entry: &Entry, found_at: usize) {
        let meta = entry.meta();
        if !self.tiers[..found_at].iter().any(|t| t.writable()) {
            return;
        }
        let mut sealed = SealedForms::from_stored(stored.clone(), meta.clone());
        let origin = crate::envelope::Origin {
            kind: meta.kind,
            producer: meta.producer.clone(),
            compute_ms: meta.compute_ms,
            inputs: meta.inputs.clone(),
        };
        let writes = self.tiers[..found_at]
            .iter()
            .filter(|t| t.writable())
            .map(|t| {
                let bytes = sealed.get(&self.integrity, key, &origin, entry.payload(), t.form());
                async move {
                    t.shared.counters.promotions.add(1);
                    t.write(key, bytes, None).await;
                }
            })
            .collect::<Vec<_>>();
        join_all(writes).await;
    }
}
