//! Codecs between values and the bytes stored in tiers.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::BoxError;

/// Turns values into bytes and back.
///
/// The [`kind`](Self::kind) is recorded in every entry's envelope; an entry of another kind is
/// treated as a miss, so two codecs sharing a namespace can never decode each other's bytes.
/// `decode` only ever sees bytes that passed envelope verification.
pub trait Codec<V>: Send + Sync + 'static {
    /// Identifies this encoding. Change it when the encoding changes incompatibly.
    fn kind(&self) -> u32;

    /// Who produces the entries, recorded for inspection (for example a library and version).
    fn producer(&self) -> String {
        format!("warmcache-core {}", env!("CARGO_PKG_VERSION"))
    }

    /// Encodes a value.
    fn encode(&self, value: &V) -> Result<Bytes, BoxError>;

    /// Decodes a verified payload.
    fn decode(&self, payload: Bytes) -> Result<V, BoxError>;
}

/// Stores [`Bytes`] as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec<Bytes> for BytesCodec {
    fn kind(&self) -> u32 {
        1
    }

    fn encode(&self, value: &Bytes) -> Result<Bytes, BoxError> {
        Ok(value.clone())
    }

    fn decode(&self, payload: Bytes) -> Result<Bytes, BoxError> {
        Ok(payload)
    }
}

/// Stores any serde value in postcard's stable wire format.
pub struct PostcardCodec<T>(PhantomData<fn() -> T>);

impl<T> PostcardCodec<T> {
    /// A postcard codec for `T`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for PostcardCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for PostcardCodec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostcardCodec")
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for PostcardCodec<T> {
    fn kind(&self) -> u32 {
        2
    }

    fn encode(&self, value: &T) -> Result<Bytes, BoxError> {
        Ok(Bytes::from(postcard::to_allocvec(value)?))
    }

    fn decode(&self, payload: Bytes) -> Result<T, BoxError> {
        Ok(postcard::from_bytes(&payload)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcard_round_trip_and_garbage() {
        let codec = PostcardCodec::<(u32, String)>::new();
        let bytes = codec.encode(&(7, "x".to_owned())).unwrap();
        assert_eq!(codec.decode(bytes).unwrap(), (7, "x".to_owned()));
        assert!(codec.decode(Bytes::from_static(&[0xff; 3])).is_err());
    }
}
