//! [`Codec`]: what a [`Cache`](crate::Cache) needs to know about its values.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::Entry;
use crate::error::BoxError;

/// How a [`Cache`](crate::Cache) stores and restores its values: the one place where byte
/// values, serde values, wasmtime modules and components differ.
///
/// The [`kind`](Self::kind) is recorded in every entry's envelope and checked while the entry
/// is verified, so an entry of another kind is a miss before anything decodes or copies it.
/// [`decode`](Self::decode) only ever sees a verified [`Entry`] (or the payload this cache's own
/// computation just produced).
pub trait Codec<V>: Clone + Send + Sync + 'static {
    /// What a caller brings to a request besides the key, for decoding: `()` for plain values,
    /// the [`wasmtime::Engine`](https://docs.rs/wasmtime) for compiled artifacts.
    type Caller: Clone + Send + Sync + 'static;

    /// Identifies this encoding. Change it when the encoding changes incompatibly.
    fn kind(&self) -> u32;

    /// Who produces the entries, recorded for inspection (for example a library and version).
    fn producer(&self) -> String {
        format!("warmcache-core {}", env!("CARGO_PKG_VERSION"))
    }

    /// Encodes a computed value for storage.
    ///
    /// # Errors
    ///
    /// When the value cannot be encoded; it is then returned but not stored.
    fn encode(&self, value: &V) -> Result<Bytes, BoxError>;

    /// Decodes a verified entry for `caller`.
    ///
    /// # Errors
    ///
    /// When the entry cannot be turned into a value (it is then recomputed and overwritten).
    fn decode(&self, caller: &Self::Caller, entry: &Entry) -> Result<V, BoxError>;

    /// Whether `value`, held in memory or produced by another caller's computation, may be
    /// handed to `caller`. When not, the caller decodes its own value from the entry instead
    /// (wasmtime: a module belongs to the engine it was loaded into). Default: always.
    fn accepts(&self, caller: &Self::Caller, value: &V) -> bool {
        let _ = (caller, value);
        true
    }

    /// Whether decoding blocks for long enough that async callers should run it on Tokio's
    /// blocking pool (default: no).
    fn blocking(&self) -> bool {
        false
    }

    /// Whether entries in local files should be handed over as files ([`Entry::file`]) rather
    /// than read into memory (default: no).
    fn prefers_files(&self) -> bool {
        false
    }
}

/// Stores [`Bytes`] as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec<Bytes> for BytesCodec {
    type Caller = ();

    fn kind(&self) -> u32 {
        1
    }

    fn encode(&self, value: &Bytes) -> Result<Bytes, BoxError> {
        Ok(value.clone())
    }

    fn decode(&self, _caller: &(), entry: &Entry) -> Result<Bytes, BoxError> {
        Ok(entry.to_bytes())
    }
}

/// Stores any serde value in postcard's stable wire format, under a schema id the caller
/// names.
///
/// The schema id says what type (and version of it) the bytes hold, such as
/// `"my-app/Manifest v3"`. It is part of every key and of the entry's kind, so two caches that
/// share a namespace but store different types never decode each other's bytes. Change it when
/// the type changes in a way postcard would misread.
pub struct PostcardCodec<T> {
    kind: u32,
    _value: PhantomData<fn() -> T>,
}

impl<T> PostcardCodec<T> {
    /// A postcard codec for values of the type named by `schema`.
    pub fn new(schema: &str) -> Self {
        let digest = blake3::derive_key("warmcache postcard codec schema v1", schema.as_bytes());
        let kind = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
        // Kinds below 16 are warmcache's own fixed kinds.
        Self {
            kind: kind.max(16),
            _value: PhantomData,
        }
    }
}

impl<T> Clone for PostcardCodec<T> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            _value: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for PostcardCodec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostcardCodec")
            .field("kind", &self.kind)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for PostcardCodec<T> {
    type Caller = ();

    fn kind(&self) -> u32 {
        self.kind
    }

    fn encode(&self, value: &T) -> Result<Bytes, BoxError> {
        Ok(Bytes::from(postcard::to_allocvec(value)?))
    }

    fn decode(&self, _caller: &(), entry: &Entry) -> Result<T, BoxError> {
        Ok(postcard::from_bytes(entry.payload())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EnvelopeMeta;

    #[test]
    fn postcard_round_trip_and_garbage() {
        let codec = PostcardCodec::<(u32, String)>::new("pair v1");
        let bytes = codec.encode(&(7, "x".to_owned())).unwrap();
        let entry = |payload: Bytes| {
            Entry::from_bytes(
                EnvelopeMeta {
                    version: 2,
                    kind: codec.kind(),
                    key: crate::CacheKey::from_bytes([0; 32]),
                    payload_len: payload.len() as u64,
                    decoded_len: payload.len() as u64,
                    compressed: false,
                    created_ms: 0,
                    compute_ms: 0,
                    producer: String::new(),
                    inputs: String::new(),
                    keyed: false,
                    signer: None,
                    by_previous_key: false,
                },
                payload,
            )
        };
        assert_eq!(
            codec.decode(&(), &entry(bytes)).unwrap(),
            (7, "x".to_owned())
        );
        assert!(
            codec
                .decode(&(), &entry(Bytes::from_static(&[0xff; 3])))
                .is_err()
        );
    }

    #[test]
    fn schemas_give_different_kinds() {
        let a = PostcardCodec::<u32>::new("a").kind();
        let b = PostcardCodec::<u32>::new("b").kind();
        assert_ne!(a, b);
        assert_eq!(a, PostcardCodec::<String>::new("a").kind());
        assert!(a >= 16 && b >= 16);
    }
}
