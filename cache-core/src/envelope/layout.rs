//! The byte layout of an envelope: parsing the trailer (every index bounds-checked), the
//! payload hash, and decompression of a verified payload.

use std::ops::Range;

use bytes::Bytes;

use super::{
    EnvelopeMeta, FLAG_KEYED, FLAG_SIGNED, FLAG_ZSTD, FOOTER_LEN, FORMAT_VERSION, MAGIC,
    MAX_DECODED_LEN, MAX_INPUTS_LEN, MAX_PRODUCER_LEN, META_FIXED_LEN, META_FIXED_LEN_V1,
    SIGNATURE_BLOCK_LEN, VerifyError,
};
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::signing;

pub(super) struct Parsed {
    pub(super) meta: EnvelopeMeta,
    pub(super) payload: Range<usize>,
    /// Where the metadata is (it ends where the signature block or the footer starts).
    pub(super) meta_range: Range<usize>,
    /// Where the producer and the inputs are, within the metadata.
    pub(super) producer: Range<usize>,
    pub(super) inputs: Range<usize>,
    pub(super) flags: u16,
    /// The signer's public key and the signature, when signed.
    pub(super) signature: Option<([u8; 32], [u8; 64])>,
    pub(super) tagged_len: usize,
    pub(super) tag: [u8; 32],
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
pub(super) fn hash_into(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    if bytes.len() >= PARALLEL_HASH_MIN {
        hasher.update_rayon(bytes);
    } else {
        hasher.update(bytes);
    }
}

/// Parses the structure without checking the tag. Every index is bounds-checked before use.
pub(super) fn parse(bytes: &[u8]) -> Result<Parsed, VerifyError> {
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
        2..=FORMAT_VERSION => META_FIXED_LEN,
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
    let inputs = if version >= 4 {
        2..=2 + MAX_INPUTS_LEN
    } else {
        0..=0
    };
    if !(fixed + inputs.start()..=fixed + MAX_PRODUCER_LEN + inputs.end()).contains(&meta_len) {
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
pub(super) fn parse_tail(bytes: &[u8], entry_len: u64) -> Result<Parsed, VerifyError> {
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
    let producer_end = fixed + producer_len;
    let inputs = if version >= 4 {
        // The fixed part, the producer, then the inputs' length and the inputs.
        if producer_end + 2 > meta_len {
            return Err(VerifyError::BadLayout(
                "producer length disagrees with metadata length",
            ));
        }
        producer_end + 2..producer_end + 2 + u16_at(meta, producer_end) as usize
    } else {
        producer_end..producer_end
    };
    if inputs.end != meta_len || producer_len > MAX_PRODUCER_LEN {
        return Err(VerifyError::BadLayout(
            "producer and inputs lengths disagree with metadata length",
        ));
    }
    if payload_len != offset + meta_start as u64 {
        return Err(VerifyError::BadLayout(
            "payload length disagrees with entry size",
        ));
    }
    let producer = String::from_utf8_lossy(&meta[fixed..producer_end]).into_owned();
    let input_text = String::from_utf8_lossy(&meta[inputs.clone()]).into_owned();
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
            inputs: input_text,
            keyed: flags & FLAG_KEYED != 0,
            signer: signature.as_ref().map(|(signer, _)| signing::id_of(signer)),
            by_previous_key: false,
        },
        payload: 0..meta_start,
        meta_range: meta_start..meta_end,
        producer: meta_start + fixed..meta_start + producer_end,
        inputs: meta_start + inputs.start..meta_start + inputs.end,
        flags,
        signature,
        tagged_len: len - 32,
        tag,
    })
}

/// The metadata fields an envelope records, as `Integrity::assemble` writes them.
pub(super) struct MetaFields<'a> {
    pub(super) kind: u32,
    pub(super) key: &'a CacheKey,
    pub(super) decoded_len: u64,
    pub(super) created_ms: u64,
    pub(super) compute_ms: u64,
    pub(super) producer: &'a [u8],
    pub(super) inputs: &'a [u8],
}

/// The blake3 hash of a stored payload, on several cores when large.
pub(super) fn payload_hash(stored: &[u8]) -> [u8; 32] {
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
fn decompress(stored: &[u8], decoded_len: u64) -> Result<Vec<u8>, VerifyError> {
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
