//! The integrity envelope wrapped around every stored value.
//!
//! # Layout
//!
//! The payload comes first and the metadata follows it, so a file holding an envelope starts with
//! the payload at offset 0. That lets a loader map such a file and hand the payload to a consumer
//! that expects its own format at the start of the mapping (wasmtime maps compiled artifacts this
//! way and ignores bytes after them), while the metadata stays in the same file.
//!
//! ```text
//! payload        payload_len bytes (as stored: compressed when flags say so)
//! meta (v4)      kind u32 | key [32] | payload_len u64 | decoded_len u64 | created_ms u64
//!                | compute_ms u64 | producer_len u16 | producer | inputs_len u16 | inputs
//! meta (v2, v3)  the same without inputs_len and inputs
//! meta (v1)      the same as v2 without compute_ms
//! signature      (v3, when flag bit 2 is set) signer's public key [32] | Ed25519 signature [64]
//! footer (48 B)  meta_len u32 | version u16 | flags u16 | magic "WRMCACHE" | tag [32]
//! ```
//!
//! This release writes version 4 and reads versions 1 to 4; committed fixtures of versions 1
//! to 3 (`tests/fixtures/v*.bin`) keep verifying, so a format change cannot slip in unnoticed.
//! Version 4 added `inputs`: what the key was derived from, in readable `name=value` lines
//! ([`Origin::inputs`]), so that a miss can be explained.
//!
//! All integers are little-endian. Flags: bit 0, the tag is a keyed MAC; bit 1, the payload is
//! a zstd frame that decodes to `decoded_len` bytes; bit 2, a signature follows the metadata.
//! The tag is the plain blake3 hash, or blake3's keyed mode (a MAC) when a secret is configured
//! ([`Integrity::keyed`]); in versions 1 and 2 over everything before it, in version 3 over the
//! payload's blake3 hash followed by everything between the payload and the tag, so one pass
//! over the payload serves both the tag and the signature. The signature covers the payload's
//! hash, the metadata (with the key), the signer, the version and the flags but the keyed bit
//! ([`crate::signing`]).
//!
//! Reading verifies magic, version, layout, revocation, key echo, length, tag, signature (on a
//! tier that requires one, [`Trust::Signature`]) and the expected kind before any payload byte
//! is returned or decompressed: the tag covers the stored bytes, so a decompressor only ever
//! sees authentic input.
//!
//! `layout.rs` parses this layout; `integrity.rs` seals and verifies with [`Integrity`].

mod integrity;
mod layout;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::key::CacheKey;
use crate::signing::{PublicKey, SigningKey};

pub(crate) use layout::entry_of;
use layout::{parse, parse_tail};

/// Identifies the envelope format at the end of every entry.
const MAGIC: [u8; 8] = *b"WRMCACHE";
/// The envelope format version this release writes.
pub const FORMAT_VERSION: u16 = 4;
/// The oldest format version this release reads.
const OLDEST_READ_VERSION: u16 = 1;
/// Bytes of the fixed footer.
const FOOTER_LEN: usize = 4 + 2 + 2 + 8 + 32;
/// Longest producer string kept; longer ones are cut at a character boundary.
pub const MAX_PRODUCER_LEN: usize = 256;
/// Longest key-inputs text kept ([`Origin::inputs`]); longer ones are cut at a line boundary.
pub const MAX_INPUTS_LEN: usize = 2048;
/// Fixed part of the metadata in version 1 (without `compute_ms`).
const META_FIXED_LEN_V1: usize = 4 + 32 + 8 + 8 + 8 + 2;
/// Fixed part of the metadata in version 2.
const META_FIXED_LEN: usize = META_FIXED_LEN_V1 + 8;
const FLAG_KEYED: u16 = 1;
const FLAG_ZSTD: u16 = 2;
const FLAG_SIGNED: u16 = 4;
/// Bytes of the signature block: the signer's public key and the signature.
const SIGNATURE_BLOCK_LEN: usize = 32 + 64;
/// Largest decoded size accepted for a compressed payload (bounds the allocation).
const MAX_DECODED_LEN: u64 = 4 << 30;
/// The most bytes an entry's trailer (metadata and footer) takes: reading this many from its
/// end is enough for [`inspect_trailer`].
pub const MAX_TRAILER_LEN: usize =
    FOOTER_LEN + SIGNATURE_BLOCK_LEN + META_FIXED_LEN + MAX_PRODUCER_LEN + 2 + MAX_INPUTS_LEN;

/// How a payload is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Compression {
    /// As it is.
    #[default]
    None,
    /// A zstd frame at this level (1 is fast, 19 is small; 3 is zstd's default).
    Zstd {
        /// The zstd compression level.
        level: i32,
    },
}
const MAC_CONTEXT: &str = "warmcache 2026 envelope mac key v1";

/// Why an envelope failed verification. Every variant makes the entry a miss.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Shorter than the smallest possible envelope, or the metadata runs past the start.
    #[error("envelope truncated: {len} bytes")]
    Truncated {
        /// The length received.
        len: usize,
    },
    /// The magic bytes are wrong: not a warmcache entry, or damaged.
    #[error("envelope magic missing")]
    BadMagic,
    /// Written by a format version this release does not read.
    #[error(
        "envelope format version {0} is not supported (this release reads {OLDEST_READ_VERSION} \
         to {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u16),
    /// Lengths inside the envelope disagree with each other or with its size.
    #[error("envelope layout inconsistent: {0}")]
    BadLayout(&'static str),
    /// The entry verified, but its compressed payload does not decode to the recorded length.
    #[error("verified envelope payload could not be decompressed: {0}")]
    Undecodable(String),
    /// The entry names another key than the one it was read under.
    #[error("envelope is for key {found}, read under key {expected}")]
    KeyMismatch {
        /// The key the caller asked for.
        expected: CacheKey,
        /// The key recorded in the entry.
        found: CacheKey,
    },
    /// The tag does not match the contents (plain mode): the entry is damaged.
    #[error("envelope tag mismatch: entry is corrupt")]
    TagMismatch,
    /// With a secret configured, the entry is not authentic: its MAC is wrong, it carries a
    /// plain tag, or it was copied from another key. Damage and forgery cannot be told apart here,
    /// so both count as forged.
    #[error("envelope failed authentication: {0}")]
    Forged(&'static str),
    /// The entry carries a MAC but no secret is configured to check it.
    #[error("envelope carries a MAC but no secret is configured to verify it")]
    Unverifiable,
    /// The tier accepts only signed entries ([`Trust::Signature`]) and this one is not signed.
    #[error("entry is not signed, and this tier accepts only entries signed by a trusted key")]
    Unsigned,
    /// Signed by a key this cache does not trust.
    #[error(
        "entry is signed by {signer}, which is not among the trusted keys (add it to the trusted \
         keys if it is a producer of this fleet)"
    )]
    UntrustedSigner {
        /// The signer's key id.
        signer: String,
    },
    /// Signed by a revoked key: rejected even when the signature is valid.
    #[error("entry is signed by {signer}, a revoked key")]
    RevokedSigner {
        /// The signer's key id.
        signer: String,
    },
    /// The signature does not match the entry: damaged, or forged.
    #[error("entry's signature by {signer} does not verify")]
    BadSignature {
        /// The key id the entry names as its signer.
        signer: String,
    },
    /// An entry for a tier that accepts only signed entries was asked of a cache that holds no
    /// signing key (not a verification failure of the entry itself).
    #[error("no signing key is configured: entries for a signed tier cannot be made here")]
    CannotSign,
    /// The entry is intact but holds another kind of value than the reader decodes (another
    /// codec, another value type, a component where a module was expected).
    #[error("entry holds kind {found:#x}, the reader expects kind {expected:#x}")]
    WrongKind {
        /// The kind the reader decodes.
        expected: u32,
        /// The kind recorded in the entry.
        found: u32,
    },
}

impl VerifyError {
    /// Whether this failure counts as a forgery: the entry is not authentic under a secret or
    /// a signature rule (damage and forgery cannot be told apart there).
    pub fn is_forgery(&self) -> bool {
        matches!(
            self,
            VerifyError::Forged(_)
                | VerifyError::Unsigned
                | VerifyError::UntrustedSigner { .. }
                | VerifyError::RevokedSigner { .. }
                | VerifyError::BadSignature { .. }
        )
    }
}

/// Metadata recorded in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct EnvelopeMeta {
    /// The envelope format version the entry was written in.
    pub version: u16,
    /// The codec or artifact kind that produced the payload.
    pub kind: u32,
    /// The key the entry was written under.
    pub key: CacheKey,
    /// Length of the payload as stored, in bytes.
    pub payload_len: u64,
    /// Length of the payload once decompressed (equal to `payload_len` when not compressed).
    pub decoded_len: u64,
    /// Whether the stored payload is a zstd frame.
    pub compressed: bool,
    /// Creation time in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// How long computing the value took, in milliseconds (what a hit saves). Zero for entries
    /// of format version 1, which did not record it.
    pub compute_ms: u64,
    /// Who produced it, for example `"wasmtime 48.0.8 x86_64-linux"`.
    pub producer: String,
    /// What its key was derived from, as `name=value` lines ([`Origin::inputs`]); empty when
    /// the producer recorded nothing, and for entries of format versions 1 to 3. Known
    /// without verification (as by [`inspect`]) it is only a claim, fit for explaining a miss.
    #[serde(default)]
    pub inputs: String,
    /// Whether the tag is a keyed MAC.
    pub keyed: bool,
    /// The [`id`](PublicKey::id) of the key that signed the entry, if it is signed. Known
    /// without verification (as by [`inspect`]) it is only a claim.
    #[serde(default)]
    pub signer: Option<String>,
    /// Whether the MAC verified under a previous secret ([`Integrity::accepting`]) rather than
    /// the current one: such an entry is re-tagged before it is copied anywhere, so it outlives
    /// the rotation. Known only after a full verification.
    #[serde(skip)]
    pub(crate) by_previous_key: bool,
}

/// What an entry is and where it came from, written into its envelope by [`Integrity::seal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The codec or artifact kind of the payload; a reader expecting another kind rejects it.
    pub kind: u32,
    /// Who produced it, for inspection (cut to [`MAX_PRODUCER_LEN`] bytes).
    pub producer: String,
    /// How long computing the value took, in milliseconds.
    pub compute_ms: u64,
    /// What the key was derived from, as `name=value` lines (cut to [`MAX_INPUTS_LEN`]).
    pub inputs: String,
}

impl Origin {
    /// An origin of `kind` by `producer`, with no compute time or inputs recorded.
    pub fn new(kind: u32, producer: impl Into<String>) -> Self {
        Self {
            kind,
            producer: producer.into(),
            compute_ms: 0,
            inputs: String::new(),
        }
    }

    /// Records how long computing the value took.
    pub fn compute_ms(mut self, ms: u64) -> Self {
        self.compute_ms = ms;
        self
    }

    /// Records what the key was derived from, as `name=value` lines, so that a reader with
    /// other inputs can say which differ (one line per field; values without line breaks).
    pub fn inputs(mut self, inputs: impl Into<String>) -> Self {
        self.inputs = inputs.into();
        self
    }
}

/// The rule an entry must meet on a tier: who could have produced it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trust {
    /// Sealed under the stack's secret (a keyed MAC), or with a plain tag when there is none:
    /// anyone who can verify such an entry can also make one. For tiers that only holders of
    /// the secret write.
    #[default]
    Secret,
    /// Signed by one of the trusted keys ([`Integrity::trusting`], and the stack's own
    /// [`signing`](Integrity::signing) key), none of them revoked: consumers that verify cannot
    /// produce. For tiers a fleet shares ([`Tier::signed`](crate::Tier::signed)).
    Signature,
}

/// The integrity mode: plain blake3 tags or a keyed MAC, and the Ed25519 keys that sign and are
/// trusted on signed tiers.
///
/// Use [`Integrity::keyed`] for tiers that others can write to (a shared bucket): without the
/// secret nobody can produce an entry this cache accepts. A cache with a secret rejects entries
/// without a MAC, and one without a secret rejects entries with one. Where the holders of the
/// secret should not all be able to produce what the others run (a fleet), sign instead: a tier
/// under [`Trust::Signature`] accepts only entries signed by a key in
/// [`trusting`](Self::trusting), and only a cache with a [`signing`](Self::signing) key writes
/// it.
#[derive(Clone, Default)]
pub struct Integrity {
    mac_key: Option<[u8; 32]>,
    /// Keys of earlier secrets, accepted when verifying (a rotation); never used to seal.
    previous: Vec<[u8; 32]>,
    /// Signs every entry this cache seals.
    signer: Option<SigningKey>,
    /// Whose signatures a signed tier accepts (besides the signer's own).
    trusted: Vec<PublicKey>,
    /// Key ids whose signatures are refused on every tier, valid or not.
    revoked: Vec<String>,
}

/// Shortest secret [`Integrity::from_secret`] accepts: 32 bytes, the MAC key's own size.
pub const MIN_SECRET_LEN: usize = 32;

/// A secret refused by [`Integrity::from_secret`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the integrity secret is {len} bytes; at least {MIN_SECRET_LEN} are required (generate one \
     with `openssl rand -hex 32`)"
)]
pub struct WeakSecret {
    /// The length of the refused secret.
    pub len: usize,
}

impl fmt::Debug for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.mac_key.is_some() {
            "keyed"
        } else {
            "plain"
        };
        f.debug_struct("Integrity")
            .field("mode", &mode)
            .field("key_id", &self.key_id())
            .field("previous", &self.previous.len())
            .field("signer", &self.signer.as_ref().map(|k| k.public_key().id()))
            .field("trusted", &self.trusted)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whether `name` can name a namespace of a shared store (a directory or a path segment in a
/// bucket): one path segment of ASCII letters, digits, `-` and `_`, as every
/// [`Integrity::key_id`] is.
pub fn is_namespace(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn key_id_of(key: &[u8; 32]) -> String {
    let id = blake3::keyed_hash(key, b"warmcache key id");
    format!("k{}", hex::encode(&id.as_bytes()[..8]))
}

/// Reads an envelope's metadata without verifying its tag, for listings and inspection.
///
/// Nothing read this way may be trusted or decoded; use [`Integrity::open`] for that.
pub fn inspect(bytes: &[u8]) -> Result<EnvelopeMeta, VerifyError> {
    parse(bytes).map(|p| p.meta)
}

/// [`inspect`] from only the last bytes of an entry (at least [`MAX_TRAILER_LEN`] of them, or
/// the whole entry when it is shorter) and the entry's length, as
/// [`Backend::get_tail`](crate::Backend::get_tail) returns them: what listing a large cache
/// needs, without transferring the payloads. Checks the layout, not the tag.
///
/// # Errors
///
/// As for [`inspect`].
pub fn inspect_trailer(tail: &[u8], entry_len: u64) -> Result<EnvelopeMeta, VerifyError> {
    parse_tail(tail, entry_len).map(|p| p.meta)
}
