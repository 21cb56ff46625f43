//! Sealing and verifying: [`Integrity`]'s keys, the tag, the signature, and the trust rule of
//! each tier.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::layout::{MetaFields, Parsed, entry_of, hash_into, parse, payload_hash};
use super::{
    Compression, EnvelopeMeta, FLAG_KEYED, FLAG_SIGNED, FLAG_ZSTD, FOOTER_LEN, FORMAT_VERSION,
    Integrity, MAC_CONTEXT, MAGIC, MAX_DECODED_LEN, MAX_INPUTS_LEN, MAX_PRODUCER_LEN,
    META_FIXED_LEN, MIN_SECRET_LEN, Origin, SIGNATURE_BLOCK_LEN, Trust, VerifyError, WeakSecret,
    key_id_of, now_ms,
};
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::signing::{self, PublicKey, SigningKey};

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
            inputs: cut_inputs(&origin.inputs).as_bytes(),
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
        let meta_len = META_FIXED_LEN + fields.producer.len() + 2 + fields.inputs.len();
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
        out.extend_from_slice(&(fields.inputs.len() as u16).to_le_bytes());
        out.extend_from_slice(fields.inputs);
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

    /// A tag of versions 3 and 4: over the payload's hash and the trailer before the tag.
    pub(super) fn tag_v3(
        &self,
        keyed: bool,
        payload_hash: &[u8; 32],
        trailer: &[u8],
    ) -> blake3::Hash {
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
        let fields = MetaFields {
            kind: meta.kind,
            key: &meta.key,
            decoded_len: meta.decoded_len,
            created_ms: meta.created_ms,
            compute_ms: meta.compute_ms,
            producer: &stored[parsed.producer.clone()],
            inputs: &stored[parsed.inputs.clone()],
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

/// `inputs` cut to [`MAX_INPUTS_LEN`] bytes at the end of a line: a cut field is dropped
/// whole rather than recorded wrong.
fn cut_inputs(inputs: &str) -> &str {
    if inputs.len() <= MAX_INPUTS_LEN {
        return inputs;
    }
    let mut cut = MAX_INPUTS_LEN;
    while !inputs.is_char_boundary(cut) {
        cut -= 1;
    }
    inputs[..cut].rfind('\n').map_or("", |end| &inputs[..end])
}
