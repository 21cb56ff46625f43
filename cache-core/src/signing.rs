//! Ed25519 keys for signed entries: who may produce what a fleet loads.
//!
//! A secret ([`Integrity::from_secret`](crate::Integrity::from_secret)) lets everyone who can
//! verify an entry also make one. A signing key separates the two: producers hold a
//! [`SigningKey`], consumers only the [`PublicKey`]s they trust, and a consumer cannot make an
//! entry another node accepts. The envelope carries the signer's public key and the signature
//! (docs/DESIGN.md "Signed entries").

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};

/// The prefix of a public key's text form, [`PublicKey`]'s `Display`.
const PUBLIC_PREFIX: &str = "ed25519:";
/// Separates what is signed from every other use of the same key.
const SIGNATURE_CONTEXT: &[u8] = b"warmcache 2026 signed envelope v3\0";
const KEY_ID_CONTEXT: &str = "warmcache 2026 signing key id";

/// A key, public or private, that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not the text of a public key.
    #[error(
        "not an Ed25519 public key: expected `ed25519:` and 64 hex digits (as `warmcache keygen` \
         prints), optionally after `KEY_ID=`; got {0:?}"
    )]
    BadPublicKey(String),
    /// A public key given with a key id that is not its own (a typo, or the wrong key).
    #[error("key id {given} does not belong to the public key given with it (its id is {actual})")]
    IdMismatch {
        /// The id written next to the key.
        given: String,
        /// The key's own id.
        actual: String,
    },
    /// Not a PKCS#8 Ed25519 private key.
    #[error(
        "not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as \
         `warmcache keygen` or `openssl genpkey -algorithm ed25519` write): {0}"
    )]
    BadPrivateKey(String),
    /// The system's random source failed while generating a key.
    #[error("no randomness for a new key: {0}")]
    NoRandomness(String),
}

/// A private Ed25519 key that signs entries. Zeroed when dropped; its `Debug` shows only the
/// public key's id.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A new random key from the operating system's random source.
    ///
    /// # Errors
    ///
    /// [`KeyError::NoRandomness`] when the random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Reads a PKCS#8 PEM private key (what [`to_pem`](Self::to_pem) writes, and `openssl
    /// genpkey -algorithm ed25519`).
    ///
    /// # Errors
    ///
    /// [`KeyError::BadPrivateKey`] for anything else.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map(|key| Self { key })
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))
    }

    /// The key as PKCS#8 PEM, in memory that is zeroed when dropped.
    ///
    /// # Errors
    ///
    /// [`KeyError::BadPrivateKey`] if encoding fails (it does not for a valid key).
    pub fn to_pem(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        self.key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))
    }

    /// The public key that verifies this key's signatures.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key_id", &self.public_key().id())
            .finish_non_exhaustive()
    }
}

/// A public Ed25519 key whose signatures a tier trusts. Its text form is `ed25519:` and 64 hex
/// digits; [`id`](Self::id) is a short name for logs, listings and revocation lists.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// The key from its 32 bytes, `None` when they are not a valid Ed25519 point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .map(|key| Self { key })
    }

    /// The key's 32 bytes, as an envelope records its signer.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// `s` and 16 hex digits derived one-way from the key: what listings, logs and
    /// `revoked_keys` name it by.
    pub fn id(&self) -> String {
        id_of(&self.key.to_bytes())
    }

    /// Whether `signature` is this key's over `message` (strict verification: no malleable or
    /// weak-key signatures).
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.key.verify_strict(message, &signature).is_ok()
    }
}

/// The id of the public key `bytes`, valid point or not (an envelope can name any 32 bytes).
pub(crate) fn id_of(bytes: &[u8; 32]) -> String {
    let id = blake3::derive_key(KEY_ID_CONTEXT, bytes);
    format!("s{}", hex::encode(&id[..8]))
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.key.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    /// `ed25519:HEX`, or `ID=ed25519:HEX` where `ID` must be the key's own [`id`](Self::id).
    fn from_str(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let (given_id, key) = match text.split_once('=') {
            Some((id, key)) => (Some(id.trim()), key.trim()),
            None => (None, text),
        };
        let bad = || KeyError::BadPublicKey(text.to_owned());
        let hex_digits = key.strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| bad())?;
        let key = Self::from_bytes(&bytes).ok_or_else(bad)?;
        match given_id {
            Some(given) if given != key.id() => Err(KeyError::IdMismatch {
                given: given.to_owned(),
                actual: key.id(),
            }),
            _ => Ok(key),
        }
    }
}

/// What an entry's signature covers, in the order hashed: the context, the payload's blake3
/// hash, the metadata (which holds the key), the signer, and the format version and flags
/// (without the tag's keyed bit, which says only how the tag was made, so a tier can re-tag an
/// entry with its own secret and keep the signature).
pub(crate) fn signed_message(
    payload_hash: &[u8; 32],
    meta: &[u8],
    signer: &[u8; 32],
    version: u16,
    flags: u16,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 32 + meta.len() + 32 + 4);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(payload_hash);
    m.extend_from_slice(meta);
    m.extend_from_slice(signer);
    m.extend_from_slice(&version.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let public = key.public_key();
        assert_eq!(public.to_string().parse::<PublicKey>().unwrap(), public);
        let with_id = format!("{}={public}", public.id());
        assert_eq!(with_id.parse::<PublicKey>().unwrap(), public);
        let other = SigningKey::generate().unwrap().public_key();
        let wrong_id = format!("{}={public}", other.id());
        assert!(matches!(
            wrong_id.parse::<PublicKey>(),
            Err(KeyError::IdMismatch { .. })
        ));
        for bad in ["", "ed25519:", "ed25519:zz", &public.to_string()[1..]] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad:?}");
        }
        assert!(SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\n").is_err());
        // Debug never shows the private key.
        let shown = format!("{key:?}");
        assert!(shown.contains(&public.id()) && !shown.contains("PRIVATE"));
    }

    #[test]
    fn an_openssl_key_is_read() {
        // `openssl genpkey -algorithm ed25519` (RFC 8410 test key).
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(pem).unwrap();
        let message = b"m";
        assert!(key.public_key().verifies(message, &key.sign(message)));
        assert!(!key.public_key().verifies(b"n", &key.sign(message)));
    }
}
