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
//! meta (v2, v3)  kind u32 | key [32] | payload_len u64 | decoded_len u64 | created_ms u64
//!                | compute_ms u64 | producer_len u16 | producer
//! meta (v1)      the same without compute_ms
//! signature      (v3, when flag bit 2 is set) signer's public key [32] | Ed25519 signature [64]
//! footer (48 B)  meta_len u32 | version u16 | flags u16 | magic "WRMCACHE" | tag [32]
//! ```
//!
//! This release writes version 3 and reads versions 1 to 3; committed fixtures of versions 1
//! and 2 (`tests/fixtures/v*.bin`) keep verifying, so a format change cannot slip in unnoticed.
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

use std::fmt;
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::entry::Entry;
use crate::key::CacheKey;
use crate::signing::{self, PublicKey, SigningKey};

/// Identifies the envelope format at the end of every entry.
const MAGIC: [u8; 8] = *b"WRMCACHE";
/// The envelope format version this release writes.
pub const FORMAT_VERSION: u16 = 3;
/// The oldest format version this release reads.
const OLDEST_READ_VERSION: u16 = 1;
/// Bytes of the fixed footer.
const FOOTER_LEN: usize = 4 + 2 + 2 + 8 + 32;
/// Longest producer string kept; longer ones are cut at a character boundary.
pub const MAX_PRODUCER_LEN: usize = 256;
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
    FOOTER_LEN + SIGNATURE_BLOCK_LEN + META_FIXED_LEN + MAX_PRODUCER_LEN;

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
}

impl Origin {
    /// An origin of `kind` by `producer`, with no compute time recorded.
    pub fn new(kind: u32, producer: impl Into<String>) -> Self {
        Self {
            kind,
            producer: producer.into(),
            compute_ms: 0,
        }
    }

    /// Records how long computing the value took.
    pub fn compute_ms(mut self, ms: u64) -> Self {
        self.compute_ms = ms;
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

struct Parsed {
    meta: EnvelopeMeta,
    payload: Range<usize>,
    /// Where the metadata is (it ends where the signature block or the footer starts).
    meta_range: Range<usize>,
    flags: u16,
    /// The signer's public key and the signature, when signed.
    signature: Option<([u8; 32], [u8; 64])>,
    tagged_len: usize,
    tag: [u8; 32],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Inputs from this size on are hashed on rayon's thread pool. blake3 splits work by 1 KiB
/// chunks, so smaller inputs gain nothing from more threads and pay the hand-off.
const PARALLEL_HASH_MIN: usize = 1 << 20;

/// Feeds `bytes` to `hasher`, on several cores when large. Verifying a 64 MiB artifact is the
/// largest cost of an mmap warm start, so it is worth the threads.
fn hash_into(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    if bytes.len() >= PARALLEL_HASH_MIN {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
}

/// Parses the structure without checking the tag. Every index is bounds-checked before use.
fn parse(bytes: &[u8]) -> Result<Parsed, VerifyError> {
    parse_tail(bytes, bytes.len() as u64)
}

/// The signer's public key and the signature, from a signature block.
fn signature_block(block: &[u8]) -> ([u8; 32], [u8; 64]) {
    let mut signer = [0u8; 32];
    let mut signature = [0u8; 64];
    signer.copy_from_slice(&block[..32]);
    signature.copy_from_slice(&block[32..]);
    (signer, signature)
}

/// An entry's footer, checked: where it starts, the format version, the fixed metadata length
/// of that version, the flags and the metadata length.
struct Footer {
    at: usize,
    version: u16,
    fixed: usize,
    flags: u16,
    meta_len: usize,
}

fn parse_footer(bytes: &[u8]) -> Result<Footer, VerifyError> {
    let len = bytes.len();
    if len < FOOTER_LEN + META_FIXED_LEN_V1 {
        return Err(VerifyError::Truncated { len });
    }
    let at = len - FOOTER_LEN;
    if bytes[at + 8..at + 16] != MAGIC {
        return Err(VerifyError::BadMagic);
    }
    let version = u16_at(bytes, at + 4);
    let fixed = match version {
        1 => META_FIXED_LEN_V1,
        2 | FORMAT_VERSION => META_FIXED_LEN,
        other => return Err(VerifyError::UnsupportedVersion(other)),
    };
    let flags = u16_at(bytes, at + 6);
    let known = match version {
        1 | 2 => FLAG_KEYED | FLAG_ZSTD,
        _ => FLAG_KEYED | FLAG_ZSTD | FLAG_SIGNED,
    };
    if flags & !known != 0 {
        return Err(VerifyError::BadLayout("unknown flags"));
    }
    let meta_len = u32_at(bytes, at) as usize;
    if !(fixed..=fixed + MAX_PRODUCER_LEN).contains(&meta_len) {
        return Err(VerifyError::BadLayout("metadata length out of range"));
    }
    Ok(Footer {
        at,
        version,
        fixed,
        flags,
        meta_len,
    })
}

/// Parses the trailer from `bytes`, the last bytes of an entry `entry_len` bytes long.
fn parse_tail(bytes: &[u8], entry_len: u64) -> Result<Parsed, VerifyError> {
    let len = bytes.len();
    let Some(offset) = entry_len.checked_sub(len as u64) else {
        return Err(VerifyError::BadLayout("more bytes than the entry holds"));
    };
    let Footer {
        at: footer,
        version,
        fixed,
        flags,
        meta_len,
    } = parse_footer(bytes)?;
    let meta_end = if flags & FLAG_SIGNED != 0 {
        footer.checked_sub(SIGNATURE_BLOCK_LEN)
    } else {
        Some(footer)
    };
    let Some(meta_start) = meta_end.and_then(|end| end.checked_sub(meta_len)) else {
        return Err(VerifyError::Truncated { len });
    };
    let meta_end = meta_start + meta_len;
    let signature = (flags & FLAG_SIGNED != 0).then(|| signature_block(&bytes[meta_end..footer]));
    let meta = &bytes[meta_start..meta_end];
    let kind = u32_at(meta, 0);
    let mut key = [0u8; 32];
    key.copy_from_slice(&meta[4..36]);
    let payload_len = u64_at(meta, 36);
    let decoded_len = u64_at(meta, 44);
    let created_ms = u64_at(meta, 52);
    let compute_ms = if version == 1 { 0 } else { u64_at(meta, 60) };
    let producer_len = u16_at(meta, fixed - 2) as usize;
    let compressed = flags & FLAG_ZSTD != 0;
    if !compressed && decoded_len != payload_len {
        return Err(VerifyError::BadLayout(
            "decoded length of an uncompressed payload differs",
        ));
    }
    if decoded_len > MAX_DECODED_LEN {
        return Err(VerifyError::BadLayout("decoded length over the limit"));
    }
    if fixed + producer_len != meta_len {
        return Err(VerifyError::BadLayout(
            "producer length disagrees with metadata length",
        ));
    }
    if payload_len != offset + meta_start as u64 {
        return Err(VerifyError::BadLayout(
            "payload length disagrees with entry size",
        ));
    }
    let producer = String::from_utf8_lossy(&meta[fixed..]).into_owned();
    let mut tag = [0u8; 32];
    tag.copy_from_slice(&bytes[len - 32..]);
    Ok(Parsed {
        meta: EnvelopeMeta {
            version,
            kind,
            key: CacheKey::from_bytes(key),
            payload_len,
            decoded_len,
            compressed,
            created_ms,
            compute_ms,
            producer,
            keyed: flags & FLAG_KEYED != 0,
            signer: signature.as_ref().map(|(signer, _)| signing::id_of(signer)),
            by_previous_key: false,
        },
        payload: 0..meta_start,
        meta_range: meta_start..meta_end,
        flags,
        signature,
        tagged_len: len - 32,
        tag,
    })
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Integrity {
    /// Plain blake3 tags: detects damage, not forgery.
    pub fn plain() -> Self {
        Self::default()
    }

    /// Keyed blake3 tags (a MAC) derived from `secret`, of any length. For a secret from
    /// configuration or the environment use [`from_secret`](Self::from_secret), which refuses
    /// short ones.
    pub fn keyed(secret: &[u8]) -> Self {
        Self {
            mac_key: Some(blake3::derive_key(MAC_CONTEXT, secret)),
            ..Self::default()
        }
    }

    /// Keyed tags from `secret`, which must be at least [`MIN_SECRET_LEN`] bytes: a short
    /// secret can be guessed, and then anyone who can write a shared tier can make every node
    /// run their code.
    ///
    /// # Errors
    ///
    /// [`WeakSecret`] for a secret shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(WeakSecret { len: secret.len() });
        }
        Ok(Self::keyed(secret))
    }

    /// Also accepts entries sealed under `previous_secret` (for a rotation: seal with the new
    /// secret, keep reading what the old one sealed until it is gone). Entries are still sealed
    /// with the first secret only. No effect in plain mode.
    pub fn accepting(mut self, previous_secret: &[u8]) -> Self {
        if self.mac_key.is_some() {
            self.previous
                .push(blake3::derive_key(MAC_CONTEXT, previous_secret));
        }
        self
    }

    /// Signs every entry this cache seals with `key`, which makes it a producer: it writes the
    /// tiers under [`Trust::Signature`], and trusts its own key there.
    pub fn signing(mut self, key: SigningKey) -> Self {
        self.signer = Some(key);
        self
    }

    /// Accepts entries signed by `key` on tiers under [`Trust::Signature`]. Several keys may be
    /// trusted at once (a rotation: trust the new producer key, then drop the old).
    pub fn trusting(mut self, key: PublicKey) -> Self {
        if !self.trusted.contains(&key) {
            self.trusted.push(key);
        }
        self
    }

    /// Refuses entries signed by the key with id `key_id` ([`PublicKey::id`]) on every tier, even
    /// when trusted and valid: for a key that leaked. Entries it signed that a local tier holds
    /// are refused there too.
    pub fn revoking(mut self, key_id: impl Into<String>) -> Self {
        self.revoked.push(key_id.into());
        self
    }

    /// Whether a secret is configured.
    pub fn is_keyed(&self) -> bool {
        self.mac_key.is_some()
    }

    /// Whether a signing key is configured: only then are tiers under [`Trust::Signature`]
    /// written.
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// The public key of the signing key, if one is configured.
    pub fn signer(&self) -> Option<PublicKey> {
        self.signer.as_ref().map(SigningKey::public_key)
    }

    /// Every key whose signatures a signed tier accepts: the signing key's own, then those
    /// passed to [`trusting`](Self::trusting), less revoked ones.
    pub fn trusted_keys(&self) -> Vec<PublicKey> {
        self.signer()
            .into_iter()
            .chain(self.trusted.iter().copied())
            .filter(|k| !self.is_revoked(&k.id()))
            .collect()
    }

    /// The ids passed to [`revoking`](Self::revoking).
    pub fn revoked_key_ids(&self) -> &[String] {
        &self.revoked
    }

    fn is_revoked(&self, key_id: &str) -> bool {
        self.revoked.iter().any(|r| r == key_id)
    }

    /// A short, public name of the sealing key: `plain` without a secret, else `k` and 16 hex
    /// digits derived one-way from the key (it reveals nothing about the secret). Shared tiers
    /// put it in their object layout (for example
    /// `S3BackendBuilder::namespace`), so entries sealed under different secrets never collide.
    pub fn key_id(&self) -> String {
        match &self.mac_key {
            None => "plain".to_owned(),
            Some(key) => key_id_of(key),
        }
    }

    /// The [`key_id`](Self::key_id)s of the secrets passed to [`accepting`](Self::accepting).
    pub fn previous_key_ids(&self) -> Vec<String> {
        self.previous.iter().map(key_id_of).collect()
    }

    /// The hasher of tags as a tier under `trust` makes them: this cache's MAC for
    /// [`Trust::Secret`] (plain without a secret), plain for [`Trust::Signature`], where the
    /// signature authenticates and consumers may hold no secret.
    fn hasher(&self, keyed: bool) -> blake3::Hasher {
        match &self.mac_key {
            Some(k) if keyed => blake3::Hasher::new_keyed(k),
            _ => blake3::Hasher::new(),
        }
    }

    /// Whether tags on a tier under `trust` are this cache's MAC.
    fn keyed_for(&self, trust: Trust) -> bool {
        trust == Trust::Secret && self.is_keyed()
    }

    /// Wraps `payload` of `kind` by `producer` for storage under `key`, uncompressed, with no
    /// compute time recorded. See [`seal_origin`](Self::seal_origin) for the full form.
    pub fn seal(&self, key: &CacheKey, kind: u32, producer: &str, payload: &[u8]) -> Bytes {
        self.seal_origin(
            key,
            &Origin::new(kind, producer),
            payload,
            Compression::None,
        )
    }

    /// Wraps `payload` for storage under `key`, recording `origin` and compressing as asked. If
    /// compressing fails or does not make the payload smaller, it is stored uncompressed.
    pub fn seal_origin(
        &self,
        key: &CacheKey,
        origin: &Origin,
        payload: &[u8],
        compression: Compression,
    ) -> Bytes {
        self.seal_at(key, origin, now_ms(), payload, compression)
    }

    /// [`seal_origin`](Self::seal_origin) with an explicit creation time, for reproducible
    /// output. The entry is for a tier under [`Trust::Secret`], and signed when a signing key
    /// is configured.
    pub fn seal_at(
        &self,
        key: &CacheKey,
        origin: &Origin,
        created_ms: u64,
        payload: &[u8],
        compression: Compression,
    ) -> Bytes {
        self.seal_for(Trust::Secret, key, origin, created_ms, payload, compression)
    }

    /// [`seal_at`](Self::seal_at) for a tier under `trust`. For [`Trust::Signature`] without a
    /// signing key, the entry is unsigned and that tier will refuse it: check
    /// [`can_sign`](Self::can_sign) first.
    pub fn seal_for(
        &self,
        trust: Trust,
        key: &CacheKey,
        origin: &Origin,
        created_ms: u64,
        payload: &[u8],
        compression: Compression,
    ) -> Bytes {
        let compressed = match compression {
            Compression::Zstd { level } if payload.len() as u64 <= MAX_DECODED_LEN => {
                match zstd::bulk::compress(payload, level) {
                    Ok(c) if c.len() < payload.len() => Some(c),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "zstd compression failed; storing uncompressed");
                        None
                    }
                }
            }
            _ => None,
        };
        let stored: &[u8] = compressed.as_deref().unwrap_or(payload);
        let producer = origin.producer.as_str();
        let mut cut = producer.len().min(MAX_PRODUCER_LEN);
        while !producer.is_char_boundary(cut) {
            cut -= 1;
        }
        let fields = MetaFields {
            kind: origin.kind,
            key,
            decoded_len: payload.len() as u64,
            created_ms,
            compute_ms: origin.compute_ms,
            producer: &producer.as_bytes()[..cut],
        };
        self.assemble(
            stored,
            &fields,
            compressed.is_some(),
            self.signer.as_ref(),
            self.keyed_for(trust),
        )
    }

    /// An envelope of the current format around `stored` (the payload as stored), signed by
    /// `signer` if given, with a MAC tag when `keyed`.
    fn assemble(
        &self,
        stored: &[u8],
        fields: &MetaFields<'_>,
        compressed: bool,
        signer: Option<&SigningKey>,
        keyed: bool,
    ) -> Bytes {
        let meta_len = META_FIXED_LEN + fields.producer.len();
        let sig_len = if signer.is_some() {
            SIGNATURE_BLOCK_LEN
        } else {
            0
        };
        let mut out = BytesMut::with_capacity(stored.len() + meta_len + sig_len + FOOTER_LEN);
        out.extend_from_slice(stored);
        out.extend_from_slice(&fields.kind.to_le_bytes());
        out.extend_from_slice(fields.key.as_bytes());
        out.extend_from_slice(&(stored.len() as u64).to_le_bytes());
        out.extend_from_slice(&fields.decoded_len.to_le_bytes());
        out.extend_from_slice(&fields.created_ms.to_le_bytes());
        out.extend_from_slice(&fields.compute_ms.to_le_bytes());
        out.extend_from_slice(&(fields.producer.len() as u16).to_le_bytes());
        out.extend_from_slice(fields.producer);
        let mut flags = 0;
        if compressed {
            flags |= FLAG_ZSTD;
        }
        if signer.is_some() {
            flags |= FLAG_SIGNED;
        }
        let payload_hash = payload_hash(stored);
        if let Some(signer) = signer {
            let public = signer.public_key().to_bytes();
            let message = signing::signed_message(
                &payload_hash,
                &out[stored.len()..],
                &public,
                FORMAT_VERSION,
                flags,
            );
            out.extend_from_slice(&public);
            out.extend_from_slice(&signer.sign(&message));
        }
        if keyed {
            flags |= FLAG_KEYED;
        }
        out.extend_from_slice(&(meta_len as u32).to_le_bytes());
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&MAGIC);
        let tag = self.tag_v3(keyed, &payload_hash, &out[stored.len()..]);
        out.extend_from_slice(tag.as_bytes());
        out.freeze()
    }

    /// A version-3 tag: over the payload's hash and the trailer before the tag.
    fn tag_v3(&self, keyed: bool, payload_hash: &[u8; 32], trailer: &[u8]) -> blake3::Hash {
        let mut hasher = self.hasher(keyed);
        hasher.update(payload_hash);
        hasher.update(trailer);
        hasher.finalize()
    }

    /// Verifies an envelope read under `expected` from a tier under [`Trust::Secret`] and
    /// returns its metadata and the stored payload's byte range, without copying. Use this on a
    /// mapped file; when [`EnvelopeMeta::compressed`] is set, the range holds a zstd frame.
    ///
    /// With `kind`, an intact entry of another kind is [`VerifyError::WrongKind`].
    pub fn verify(
        &self,
        expected: &CacheKey,
        kind: Option<u32>,
        bytes: &[u8],
    ) -> Result<(EnvelopeMeta, Range<usize>), VerifyError> {
        self.verify_for(Trust::Secret, expected, kind, bytes)
    }

    /// [`verify`](Self::verify) for a tier under `trust`.
    pub fn verify_for(
        &self,
        trust: Trust,
        expected: &CacheKey,
        kind: Option<u32>,
        bytes: &[u8],
    ) -> Result<(EnvelopeMeta, Range<usize>), VerifyError> {
        self.check(trust, expected, kind, bytes, true)
    }

    /// [`verify`](Self::verify) without hashing the body: the structure, key, kind, revocation
    /// and whether it is keyed are checked, the tag is not. Only for a file whose bytes verified
    /// before and have provably not changed since
    /// ([`VerifiedFiles`](crate::files::VerifiedFiles)), on a tier under [`Trust::Secret`].
    pub(crate) fn check_unhashed(
        &self,
        expected: &CacheKey,
        kind: Option<u32>,
        bytes: &[u8],
    ) -> Result<(EnvelopeMeta, Range<usize>), VerifyError> {
        self.check(Trust::Secret, expected, kind, bytes, false)
    }

    /// The trust rule: everything an entry must meet under `trust`, in one place.
    fn check(
        &self,
        trust: Trust,
        expected: &CacheKey,
        kind: Option<u32>,
        bytes: &[u8],
        hash: bool,
    ) -> Result<(EnvelopeMeta, Range<usize>), VerifyError> {
        let mut parsed = parse(bytes)?;
        if let Some(signer) = &parsed.meta.signer
            && self.is_revoked(signer)
        {
            return Err(VerifyError::RevokedSigner {
                signer: signer.clone(),
            });
        }
        let authenticated = match trust {
            Trust::Secret => {
                match (self.is_keyed(), parsed.meta.keyed) {
                    (true, false) => return Err(VerifyError::Forged("entry has no MAC")),
                    (false, true) => return Err(VerifyError::Unverifiable),
                    _ => {}
                }
                self.is_keyed()
            }
            Trust::Signature => {
                let Some(signer) = parsed.meta.signer.clone() else {
                    return Err(VerifyError::Unsigned);
                };
                if !self.trusted_keys().iter().any(|k| k.id() == signer) {
                    return Err(VerifyError::UntrustedSigner { signer });
                }
                if parsed.meta.keyed {
                    return Err(VerifyError::Forged(
                        "a signed tier's entry carries a MAC instead of a plain tag",
                    ));
                }
                true
            }
        };
        if parsed.meta.key != *expected {
            if authenticated {
                return Err(VerifyError::Forged("entry was written for another key"));
            }
            return Err(VerifyError::KeyMismatch {
                expected: *expected,
                found: parsed.meta.key,
            });
        }
        if hash {
            parsed.meta.by_previous_key = self.authenticate(trust, bytes, &parsed)?;
        }
        if let Some(expected) = kind
            && parsed.meta.kind != expected
        {
            return Err(VerifyError::WrongKind {
                expected,
                found: parsed.meta.kind,
            });
        }
        Ok((parsed.meta, parsed.payload))
    }

    /// Checks the tag, and the signature under [`Trust::Signature`]; `Ok(true)` when the tag is
    /// a previous secret's MAC.
    fn authenticate(
        &self,
        trust: Trust,
        bytes: &[u8],
        parsed: &Parsed,
    ) -> Result<bool, VerifyError> {
        let tag = blake3::Hash::from(parsed.tag);
        let keyed = parsed.meta.keyed;
        // Versions 1 and 2 tag everything before the tag; version 3 the payload's hash and the
        // trailer, so the hash of the payload serves the signature too.
        let (mut hasher, payload_hash) = if parsed.meta.version < 3 {
            (self.hasher(keyed), None)
        } else {
            (
                self.hasher(keyed),
                Some(payload_hash(&bytes[parsed.payload.clone()])),
            )
        };
        let tagged: Vec<&[u8]> = match &payload_hash {
            None => vec![&bytes[..parsed.tagged_len]],
            Some(h) => vec![h.as_slice(), &bytes[parsed.payload.end..parsed.tagged_len]],
        };
        let tag_of = |hasher: &mut blake3::Hasher| {
            for part in &tagged {
                hash_into(hasher, part);
            }
            hasher.finalize()
        };
        // blake3::Hash compares in constant time. Earlier secrets are tried only when the
        // current one fails, so entries sealed now cost one hash.
        let by_previous_key = if tag_of(&mut hasher) == tag {
            false
        } else if keyed
            && self.previous.iter().any(|key| {
                let mut hasher = blake3::Hasher::new_keyed(key);
                tag_of(&mut hasher) == tag
            })
        {
            true
        } else if keyed || trust == Trust::Signature {
            return Err(VerifyError::Forged("tag mismatch"));
        } else {
            return Err(VerifyError::TagMismatch);
        };
        if trust == Trust::Signature {
            self.check_signature(parsed, bytes, payload_hash.as_ref())?;
        }
        Ok(by_previous_key)
    }

    /// Whether the entry's signature is its signer's over what it covers.
    fn check_signature(
        &self,
        parsed: &Parsed,
        bytes: &[u8],
        payload_hash: Option<&[u8; 32]>,
    ) -> Result<(), VerifyError> {
        let signer_id = parsed.meta.signer.clone().unwrap_or_default();
        let bad = || VerifyError::BadSignature {
            signer: signer_id.clone(),
        };
        let (Some((signer, signature)), Some(payload_hash)) = (&parsed.signature, payload_hash)
        else {
            return Err(VerifyError::Unsigned);
        };
        let public = PublicKey::from_bytes(signer).ok_or_else(bad)?;
        let message = signing::signed_message(
            payload_hash,
            &bytes[parsed.meta_range.clone()],
            signer,
            parsed.meta.version,
            parsed.flags & !FLAG_KEYED,
        );
        if public.verifies(&message, signature) {
            Ok(())
        } else {
            Err(bad())
        }
    }

    /// Verifies `stored` under `key` and returns it as the current secret seals it: the same
    /// bytes when it already is, and when a previous secret ([`accepting`](Self::accepting))
    /// sealed it, the same bytes with the current MAC. What is copied between tiers goes
    /// through this, so nothing copied during a rotation becomes unverifiable once it ends.
    ///
    /// # Errors
    ///
    /// When `stored` does not verify.
    pub fn reseal(&self, key: &CacheKey, stored: &Bytes) -> Result<Bytes, VerifyError> {
        self.reseal_for(Trust::Secret, Trust::Secret, key, stored)
    }

    /// Verifies `stored`, read from a tier under `from`, and returns it as a tier under `to`
    /// takes it: re-tagged with this cache's MAC (or a plain tag) as `to` needs, and for
    /// [`Trust::Signature`] signed by a trusted key (signed here when it is not yet).
    ///
    /// # Errors
    ///
    /// When `stored` does not verify under `from`, and [`VerifyError::CannotSign`] when `to`
    /// needs a signature that it lacks and no signing key is configured.
    pub fn reseal_for(
        &self,
        from: Trust,
        to: Trust,
        key: &CacheKey,
        stored: &Bytes,
    ) -> Result<Bytes, VerifyError> {
        let (meta, _) = self.verify_for(from, key, None, stored)?;
        self.form_for(to, stored, &meta)
    }

    /// `stored`, an entry that verified with `meta`, as a tier under `to` takes it.
    pub(crate) fn form_for(
        &self,
        to: Trust,
        stored: &Bytes,
        meta: &EnvelopeMeta,
    ) -> Result<Bytes, VerifyError> {
        let keyed = self.keyed_for(to);
        let trusted_signer = meta
            .signer
            .as_ref()
            .is_some_and(|s| self.trusted_keys().iter().any(|k| k.id() == *s));
        if to == Trust::Signature && !(meta.version >= 3 && trusted_signer) {
            if self.signer.is_none() {
                return Err(VerifyError::CannotSign);
            }
            return self.rebuild(stored, keyed);
        }
        if meta.keyed == keyed && !meta.by_previous_key {
            return Ok(stored.clone());
        }
        if meta.version < 3 {
            // Only a rotation re-tags an old entry, and keeps its format: its tag covers
            // everything before it.
            let tagged = &stored[..stored.len().saturating_sub(32)];
            let mut hasher = self.hasher(keyed);
            hash_into(&mut hasher, tagged);
            let mut out = BytesMut::with_capacity(stored.len());
            out.extend_from_slice(tagged);
            out.extend_from_slice(hasher.finalize().as_bytes());
            return Ok(out.freeze());
        }
        let parsed = parse(stored)?;
        let mut out = BytesMut::from(&stored[..parsed.tagged_len]);
        let flags = if keyed {
            parsed.flags | FLAG_KEYED
        } else {
            parsed.flags & !FLAG_KEYED
        };
        let at = parsed.tagged_len - (FOOTER_LEN - 32) + 6;
        out[at..at + 2].copy_from_slice(&flags.to_le_bytes());
        let hash = payload_hash(&stored[parsed.payload.clone()]);
        let tag = self.tag_v3(keyed, &hash, &out[parsed.payload.end..]);
        out.extend_from_slice(tag.as_bytes());
        Ok(out.freeze())
    }

    /// `stored` (verified) re-made in the current format, signed by this cache's key.
    fn rebuild(&self, stored: &Bytes, keyed: bool) -> Result<Bytes, VerifyError> {
        let parsed = parse(stored)?;
        let meta = &parsed.meta;
        let fixed = if meta.version == 1 {
            META_FIXED_LEN_V1
        } else {
            META_FIXED_LEN
        };
        let producer = &stored[parsed.meta_range.start + fixed..parsed.meta_range.end];
        let fields = MetaFields {
            kind: meta.kind,
            key: &meta.key,
            decoded_len: meta.decoded_len,
            created_ms: meta.created_ms,
            compute_ms: meta.compute_ms,
            producer,
        };
        Ok(self.assemble(
            &stored[parsed.payload.clone()],
            &fields,
            meta.compressed,
            self.signer.as_ref(),
            keyed,
        ))
    }

    /// Verifies an envelope read under `expected` (of any kind) and returns it as an [`Entry`]:
    /// the payload is a zero-copy slice, or for a compressed entry the decompressed bytes
    /// (decompressed only after the tag verified).
    pub fn open(&self, expected: &CacheKey, bytes: &Bytes) -> Result<Entry, VerifyError> {
        self.open_for(Trust::Secret, expected, None, bytes)
    }

    /// [`open`](Self::open) for a tier under `trust`; with `kind`, also requires the entry to be
    /// of that kind.
    pub fn open_for(
        &self,
        trust: Trust,
        expected: &CacheKey,
        kind: Option<u32>,
        bytes: &Bytes,
    ) -> Result<Entry, VerifyError> {
        let (meta, range) = self.verify_for(trust, expected, kind, bytes)?;
        entry_of(meta, bytes, range)
    }
}

/// The metadata fields an envelope records, as [`Integrity::assemble`] writes them.
struct MetaFields<'a> {
    kind: u32,
    key: &'a CacheKey,
    decoded_len: u64,
    created_ms: u64,
    compute_ms: u64,
    producer: &'a [u8],
}

/// The blake3 hash of a stored payload, on several cores when large.
fn payload_hash(stored: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hash_into(&mut hasher, stored);
    *hasher.finalize().as_bytes()
}

/// The entry of a verified envelope `stored` whose payload is at `range`, decompressed when the
/// metadata says so.
pub(crate) fn entry_of(
    meta: EnvelopeMeta,
    stored: &Bytes,
    range: Range<usize>,
) -> Result<Entry, VerifyError> {
    let payload = if meta.compressed {
        Bytes::from(decompress(&stored[range], meta.decoded_len)?)
    } else {
        stored.slice(range)
    };
    Ok(Entry::from_bytes(meta, payload))
}

/// Decompresses a verified zstd payload that must decode to exactly `decoded_len` bytes.
pub(crate) fn decompress(stored: &[u8], decoded_len: u64) -> Result<Vec<u8>, VerifyError> {
    let capacity = usize::try_from(decoded_len.min(MAX_DECODED_LEN))
        .map_err(|_| VerifyError::Undecodable("decoded length does not fit in memory".into()))?;
    let out = zstd::bulk::decompress(stored, capacity)
        .map_err(|e| VerifyError::Undecodable(e.to_string()))?;
    if out.len() as u64 != decoded_len {
        return Err(VerifyError::Undecodable(format!(
            "decoded to {} bytes, expected {decoded_len}",
            out.len()
        )));
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> CacheKey {
        CacheKey::from_bytes([b; 32])
    }

    fn zstd(integrity: &Integrity, key: &CacheKey, payload: &[u8], level: i32) -> Bytes {
        integrity.seal_origin(
            key,
            &Origin::new(1, "p"),
            payload,
            Compression::Zstd { level },
        )
    }

    #[test]
    fn the_trailer_alone_says_what_the_whole_entry_says() {
        let i = Integrity::plain();
        let origin = Origin::new(5, "p".repeat(MAX_PRODUCER_LEN)).compute_ms(7);
        for payload_len in [0usize, 10, MAX_TRAILER_LEN, 100_000] {
            let env = i.seal_origin(&key(2), &origin, &vec![7; payload_len], Compression::None);
            let whole = inspect(&env).unwrap();
            let start = env.len().saturating_sub(MAX_TRAILER_LEN);
            assert_eq!(
                inspect_trailer(&env[start..], env.len() as u64).unwrap(),
                whole
            );
            // A tail from another entry size is refused, not misread.
            assert!(inspect_trailer(&env[start..], env.len() as u64 + 1).is_err());
            assert!(inspect_trailer(&env[start..], 3).is_err());
        }
    }

    #[test]
    fn compute_time_and_version_are_recorded() {
        let i = Integrity::plain();
        let origin = Origin::new(5, "producer").compute_ms(13_059);
        let env = i.seal_origin(&key(1), &origin, b"artifact", Compression::None);
        let meta = i.open(&key(1), &env).unwrap().meta().clone();
        assert_eq!(meta.version, FORMAT_VERSION);
        assert_eq!(meta.compute_ms, 13_059);
        assert_eq!(meta.producer, "producer");
    }

    #[test]
    fn an_intact_entry_of_another_kind_is_refused_when_a_kind_is_expected() {
        for integrity in [Integrity::plain(), Integrity::keyed(b"k")] {
            let env = integrity.seal(&key(2), 7, "p", b"v");
            assert!(integrity.verify(&key(2), Some(7), &env).is_ok());
            assert!(integrity.verify(&key(2), None, &env).is_ok());
            assert_eq!(
                integrity.verify(&key(2), Some(8), &env).unwrap_err(),
                VerifyError::WrongKind {
                    expected: 8,
                    found: 7
                }
            );
        }
    }

    #[test]
    fn round_trip_plain_and_keyed() {
        for integrity in [
            Integrity::plain(),
            Integrity::keyed(b"secret secret secret"),
        ] {
            let env = integrity.seal(&key(1), 7, "test producer", b"hello");
            let opened = integrity.open(&key(1), &env).unwrap();
            assert_eq!(opened.payload(), b"hello");
            assert_eq!(opened.meta().kind, 7);
            assert_eq!(opened.meta().producer, "test producer");
            assert_eq!(opened.meta().payload_len, 5);
            assert_eq!(opened.meta().keyed, integrity.is_keyed());
            // Payload first: the start of the envelope is the payload.
            assert_eq!(&env[..5], b"hello");
        }
    }

    #[test]
    fn compressed_round_trip_and_flips() {
        let payload: Vec<u8> = b"compressible ".repeat(400);
        for integrity in [Integrity::plain(), Integrity::keyed(b"k")] {
            let env = zstd(&integrity, &key(8), &payload, 3);
            assert!(
                env.len() < payload.len() / 4,
                "not compressed: {}",
                env.len()
            );
            let opened = integrity.open(&key(8), &env).unwrap();
            assert!(opened.meta().compressed);
            assert_eq!(opened.meta().decoded_len, payload.len() as u64);
            assert_eq!(opened.payload(), &payload[..]);
            for i in 0..env.len() {
                let mut damaged = env.to_vec();
                damaged[i] ^= 0x04;
                assert!(
                    integrity.open(&key(8), &Bytes::from(damaged)).is_err(),
                    "byte {i}"
                );
            }
        }
    }

    #[test]
    fn incompressible_payload_is_stored_plain() {
        let i = Integrity::plain();
        let mut payload = vec![0u8; 4096];
        blake3::Hasher::new().finalize_xof().fill(&mut payload);
        let env = zstd(&i, &key(9), &payload, 3);
        let opened = i.open(&key(9), &env).unwrap();
        assert!(!opened.meta().compressed);
        assert_eq!(opened.payload(), &payload[..]);
    }

    #[test]
    fn a_lying_decoded_length_is_undecodable() {
        // A frame that verifies (plain tags can be recomputed by anyone) but whose recorded
        // length is wrong must not decode.
        let i = Integrity::plain();
        let payload = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".repeat(8);
        let env = zstd(&i, &key(1), &payload, 1);
        let mut forged = env.to_vec();
        let (meta, range) = i.verify(&key(1), None, &env).unwrap();
        assert!(meta.compressed);
        let decoded_at = range.end + 44;
        forged[decoded_at..decoded_at + 8].copy_from_slice(&10u64.to_le_bytes());
        let tagged = forged.len() - 32;
        let tag = i.tag_v3(
            false,
            &payload_hash(&forged[range.clone()]),
            &forged[range.end..tagged],
        );
        forged[tagged..].copy_from_slice(tag.as_bytes());
        assert!(matches!(
            i.open(&key(1), &Bytes::from(forged)),
            Err(VerifyError::Undecodable(_))
        ));
    }

    #[test]
    fn empty_payload_round_trips() {
        let i = Integrity::plain();
        let env = i.seal(&key(2), 0, "", b"");
        assert!(i.open(&key(2), &env).unwrap().payload().is_empty());
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        for integrity in [Integrity::plain(), Integrity::keyed(b"k")] {
            let env = integrity.seal(&key(3), 1, "p", b"small entry");
            for i in 0..env.len() {
                for bit in 0..8 {
                    let mut damaged = env.to_vec();
                    damaged[i] ^= 1 << bit;
                    let damaged = Bytes::from(damaged);
                    assert!(
                        integrity.open(&key(3), &damaged).is_err(),
                        "flip of bit {bit} in byte {i} went undetected"
                    );
                }
            }
        }
    }

    #[test]
    fn truncation_is_detected() {
        let i = Integrity::plain();
        let env = i.seal(&key(3), 1, "p", b"some payload bytes");
        for len in 0..env.len() {
            assert!(i.open(&key(3), &env.slice(..len)).is_err(), "len {len}");
            assert!(i.open(&key(3), &env.slice(env.len() - len..)).is_err());
        }
    }

    #[test]
    fn key_echo_mismatch_is_detected() {
        let plain = Integrity::plain();
        let env = plain.seal(&key(4), 1, "p", b"v");
        assert_eq!(
            plain.open(&key(5), &env).unwrap_err(),
            VerifyError::KeyMismatch {
                expected: key(5),
                found: key(4)
            }
        );
        let keyed = Integrity::keyed(b"s");
        let env = keyed.seal(&key(4), 1, "p", b"v");
        assert!(keyed.open(&key(5), &env).unwrap_err().is_forgery());
    }

    #[test]
    fn modes_do_not_mix() {
        let plain = Integrity::plain();
        let keyed = Integrity::keyed(b"s");
        let other = Integrity::keyed(b"t");
        let p = plain.seal(&key(6), 1, "", b"v");
        let k = keyed.seal(&key(6), 1, "", b"v");
        assert!(keyed.open(&key(6), &p).unwrap_err().is_forgery());
        assert_eq!(
            plain.open(&key(6), &k).unwrap_err(),
            VerifyError::Unverifiable
        );
        assert!(other.open(&key(6), &k).unwrap_err().is_forgery());
    }

    #[test]
    fn long_producer_is_cut_on_a_char_boundary() {
        let i = Integrity::plain();
        let producer = "é".repeat(200);
        let env = i.seal(&key(7), 1, &producer, b"v");
        let meta = i.open(&key(7), &env).unwrap().meta().clone();
        assert!(meta.producer.len() <= MAX_PRODUCER_LEN);
        assert!(producer.starts_with(&meta.producer));
    }

    fn signer() -> SigningKey {
        SigningKey::generate().unwrap()
    }

    #[test]
    fn a_signed_tier_takes_only_entries_a_trusted_key_signed() {
        let producer_key = signer();
        let producer = Integrity::plain().signing(producer_key.clone());
        let consumer = Integrity::keyed(b"local secret").trusting(producer_key.public_key());
        let origin = Origin::new(1, "p");
        let signed = producer.seal_for(
            Trust::Signature,
            &key(1),
            &origin,
            5,
            b"code",
            Compression::None,
        );
        let (meta, _) = consumer
            .verify_for(Trust::Signature, &key(1), Some(1), &signed)
            .unwrap();
        assert_eq!(meta.signer, Some(producer_key.public_key().id()));
        // A node holding the shared secret but no signing key cannot make one.
        let mac_holder = Integrity::keyed(b"local secret");
        let forged = mac_holder.seal_for(
            Trust::Signature,
            &key(1),
            &origin,
            5,
            b"evil",
            Compression::None,
        );
        assert_eq!(
            consumer
                .verify_for(Trust::Signature, &key(1), None, &forged)
                .unwrap_err(),
            VerifyError::Unsigned
        );
        let forged = mac_holder.seal_at(&key(1), &origin, 5, b"evil", Compression::None);
        assert!(
            consumer
                .verify_for(Trust::Signature, &key(1), None, &forged)
                .unwrap_err()
                .is_forgery()
        );
        // Another key's signature.
        let stranger = Integrity::plain().signing(signer());
        let other = stranger.seal_for(
            Trust::Signature,
            &key(1),
            &origin,
            5,
            b"evil",
            Compression::None,
        );
        assert!(matches!(
            consumer.verify_for(Trust::Signature, &key(1), None, &other),
            Err(VerifyError::UntrustedSigner { .. })
        ));
        // ... relabelled as the trusted key's.
        let mut relabelled = other.to_vec();
        let at = relabelled.len() - FOOTER_LEN - SIGNATURE_BLOCK_LEN;
        relabelled[at..at + 32].copy_from_slice(&producer_key.public_key().to_bytes());
        let relabelled = Bytes::from(relabelled);
        let tagged = relabelled.len() - 32;
        let parsed = parse(&relabelled).unwrap();
        let tag = consumer.tag_v3(
            false,
            &payload_hash(&relabelled[parsed.payload.clone()]),
            &relabelled[parsed.payload.end..tagged],
        );
        let mut relabelled = relabelled.to_vec();
        relabelled[tagged..].copy_from_slice(tag.as_bytes());
        assert!(matches!(
            consumer.verify_for(Trust::Signature, &key(1), None, &relabelled),
            Err(VerifyError::BadSignature { .. })
        ));
        // Another key's entry under this key.
        assert!(
            consumer
                .verify_for(Trust::Signature, &key(2), None, &signed)
                .unwrap_err()
                .is_forgery()
        );
    }

    #[test]
    fn every_flip_of_a_signed_entry_is_refused() {
        let k = signer();
        let producer = Integrity::plain().signing(k.clone());
        let consumer = Integrity::plain().trusting(k.public_key());
        let signed = producer.seal_for(
            Trust::Signature,
            &key(3),
            &Origin::new(1, "p"),
            5,
            b"small",
            Compression::None,
        );
        for i in 0..signed.len() {
            let mut damaged = signed.to_vec();
            damaged[i] ^= 0x10;
            assert!(
                consumer
                    .verify_for(Trust::Signature, &key(3), None, &damaged)
                    .is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_rotation_trusts_several_keys_at_once() {
        let (old, new) = (signer(), signer());
        let sealed = |k: &SigningKey| {
            Integrity::plain().signing(k.clone()).seal_for(
                Trust::Signature,
                &key(8),
                &Origin::new(1, "p"),
                5,
                b"v",
                Compression::None,
            )
        };
        let both = Integrity::plain()
            .trusting(old.public_key())
            .trusting(new.public_key());
        for k in [&old, &new] {
            assert!(
                both.verify_for(Trust::Signature, &key(8), None, &sealed(k))
                    .is_ok()
            );
        }
        // The old key dropped: its entries are refused, the new key's still taken.
        let after = Integrity::plain().trusting(new.public_key());
        assert!(matches!(
            after.verify_for(Trust::Signature, &key(8), None, &sealed(&old)),
            Err(VerifyError::UntrustedSigner { .. })
        ));
        assert!(
            after
                .verify_for(Trust::Signature, &key(8), None, &sealed(&new))
                .is_ok()
        );
    }

    #[test]
    fn a_revoked_key_is_refused_on_every_tier_even_when_valid() {
        let k = signer();
        let id = k.public_key().id();
        let producer = Integrity::keyed(b"s").signing(k.clone());
        let local = producer.seal(&key(4), 1, "p", b"v");
        let shared = producer.seal_for(
            Trust::Signature,
            &key(4),
            &Origin::new(1, "p"),
            5,
            b"v",
            Compression::None,
        );
        let consumer = Integrity::keyed(b"s")
            .trusting(k.public_key())
            .revoking(id.clone());
        let revoked = VerifyError::RevokedSigner { signer: id };
        assert_eq!(consumer.verify(&key(4), None, &local).unwrap_err(), revoked);
        assert_eq!(
            consumer
                .verify_for(Trust::Signature, &key(4), None, &shared)
                .unwrap_err(),
            revoked
        );
        assert!(revoked.is_forgery());
        // The producer itself stops trusting a key it revoked.
        assert!(
            Integrity::plain()
                .signing(k.clone())
                .revoking(k.public_key().id())
                .trusted_keys()
                .is_empty()
        );
    }

    #[test]
    fn a_signed_entry_changes_tiers_and_keeps_its_signature() {
        let k = signer();
        let producer = Integrity::plain().signing(k.clone());
        let consumer = Integrity::keyed(b"local").trusting(k.public_key());
        for compression in [Compression::None, Compression::Zstd { level: 3 }] {
            let shared = producer.seal_for(
                Trust::Signature,
                &key(5),
                &Origin::new(1, "p"),
                5,
                &b"payload ".repeat(50),
                compression,
            );
            // Into a local tier: the local MAC replaces the plain tag.
            let local = consumer
                .reseal_for(Trust::Signature, Trust::Secret, &key(5), &shared)
                .unwrap();
            let opened = consumer.open(&key(5), &local).unwrap();
            assert!(opened.meta().keyed);
            assert_eq!(opened.meta().signer, Some(k.public_key().id()));
            assert_eq!(opened.payload(), &b"payload ".repeat(50)[..]);
            assert!(Integrity::keyed(b"other").open(&key(5), &local).is_err());
            // And back: the same signature verifies, the tag is plain again.
            let back = consumer
                .reseal_for(Trust::Secret, Trust::Signature, &key(5), &local)
                .unwrap();
            assert_eq!(back, shared);
        }
        // An unsigned entry reaches a signed tier only through a signing key.
        let unsigned = Integrity::plain().seal(&key(6), 1, "p", b"v");
        assert_eq!(
            Integrity::plain()
                .reseal_for(Trust::Secret, Trust::Signature, &key(6), &unsigned)
                .unwrap_err(),
            VerifyError::CannotSign
        );
        let signed = producer
            .reseal_for(Trust::Secret, Trust::Signature, &key(6), &unsigned)
            .unwrap();
        assert!(
            consumer
                .verify_for(Trust::Signature, &key(6), Some(1), &signed)
                .is_ok()
        );
        // Old formats are signed in the current one.
        assert_eq!(inspect(&signed).unwrap().version, FORMAT_VERSION);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let b = Bytes::from(bytes);
            let _ = Integrity::plain().open(&key(1), &b);
            let _ = Integrity::keyed(b"x").open(&key(1), &b);
            let _ = Integrity::plain()
                .trusting(SigningKey::generate().unwrap().public_key())
                .verify_for(Trust::Signature, &key(1), None, &b);
            let _ = inspect(&b);
        }

        #[test]
        fn mutated_envelopes_never_panic_and_never_verify(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let i = Integrity::plain();
            let env = i.seal(&key(9), 3, "prop", &payload);
            let mut m = env.to_vec();
            for (at, value) in &edits {
                let at = at.index(m.len());
                m[at] = *value;
            }
            if let Some(cut) = cut {
                m.truncate(cut.index(m.len()));
            }
            let changed = m != env[..];
            let result = i.open(&key(9), &Bytes::from(m));
            prop_assert_eq!(result.is_ok(), !changed);
        }
    }
}
