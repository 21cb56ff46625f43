//! [`Entry`]: one verified entry, in memory or in a mapped local file.

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::envelope::EnvelopeMeta;

/// A verified entry: its metadata and its payload, held in memory or in a local file mapped
/// read-only. Cheap to clone.
///
/// Every `Entry` a [`Tiered`](crate::Tiered) or [`Integrity::open`](crate::Integrity::open)
/// hands out has passed envelope verification (tag or MAC, key echo, length, and the kind the
/// reader asked for). The only other source is a [`Cache`](crate::Cache) handing a decoder the
/// payload its own computation just produced. Nothing outside this crate can make one, so a
/// decoder that receives an `Entry` can rely on its bytes.
#[derive(Clone)]
pub struct Entry(Arc<Inner>);

struct Inner {
    meta: EnvelopeMeta,
    body: Body,
    tier: Option<usize>,
}

enum Body {
    Bytes(Bytes),
    File {
        file: File,
        map: memmap2::Mmap,
        payload: Range<usize>,
    },
}

impl Entry {
    pub(crate) fn from_bytes(meta: EnvelopeMeta, payload: Bytes) -> Self {
        Self(Arc::new(Inner {
            meta,
            body: Body::Bytes(payload),
            tier: None,
        }))
    }

    pub(crate) fn from_file(
        meta: EnvelopeMeta,
        file: File,
        map: memmap2::Mmap,
        payload: Range<usize>,
    ) -> Self {
        Self(Arc::new(Inner {
            meta,
            body: Body::File { file, map, payload },
            tier: None,
        }))
    }

    /// The same entry, recorded as found in tier `index`.
    pub(crate) fn at_tier(self, index: usize) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                inner.tier = Some(index);
                Self(Arc::new(inner))
            }
            Err(shared) => Self(shared),
        }
    }

    /// The verified metadata.
    pub fn meta(&self) -> &EnvelopeMeta {
        &self.0.meta
    }

    /// The payload (decompressed if it was stored compressed).
    pub fn payload(&self) -> &[u8] {
        match &self.0.body {
            Body::Bytes(bytes) => bytes,
            Body::File { map, payload, .. } => &map[payload.clone()],
        }
    }

    /// The payload as [`Bytes`]: shared for an entry in memory, copied from the mapping for
    /// a file.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0.body {
            Body::Bytes(bytes) => bytes.clone(),
            Body::File { .. } => Bytes::copy_from_slice(self.payload()),
        }
    }

    /// For an entry in a local file: the open, read-only file. The payload starts at offset 0
    /// and the envelope's trailer follows it, so loaders that accept trailing bytes (wasmtime's
    /// `Module::deserialize_open_file`) can map it directly. Backends that offer files never
    /// modify an entry file in place, so the file holds what was verified for as long as it
    /// is open.
    pub fn file(&self) -> Option<&File> {
        match &self.0.body {
            Body::Bytes(_) => None,
            Body::File { file, .. } => Some(file),
        }
    }

    /// Index of the tier that answered (0 is the fastest), or `None` for an entry that was
    /// not read from a tier.
    pub fn tier(&self) -> Option<usize> {
        self.0.tier
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("meta", &self.0.meta)
            .field("in_file", &self.file().is_some())
            .field("payload_len", &self.payload().len())
            .field("tier", &self.0.tier)
            .finish()
    }
}
