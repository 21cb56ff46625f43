//! Self-describing test values: any prefix, mix or mutation of them is detectable.

use bytes::Bytes;

const HEADER: usize = 16;
/// The shortest value that carries its whole identity.
pub(crate) const MIN_LEN: usize = HEADER;

fn fill(tag: u64, seq: u64, out: &mut [u8]) {
    // xorshift64*, seeded from the header, so every byte depends on (tag, seq).
    let mut state =
        tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq.rotate_left(29) ^ 0xD1B5_4A32_D192_ED03;
    for chunk in out.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// A value of `len` bytes identified by `(tag, seq)`. Values of at least 16 bytes carry their
/// identity in the first 16 bytes; shorter ones are a prefix of the same pattern.
pub fn make(tag: u64, seq: u64, len: usize) -> Bytes {
    let mut out = vec![0u8; len];
    let mut full = [0u8; HEADER];
    full[..8].copy_from_slice(&tag.to_le_bytes());
    full[8..].copy_from_slice(&seq.to_le_bytes());
    let head = len.min(HEADER);
    out[..head].copy_from_slice(&full[..head]);
    if len > HEADER {
        fill(tag, seq, &mut out[HEADER..]);
    }
    Bytes::from(out)
}

/// The `(tag, seq)` of a complete value made by [`make`] with length `len`, or `None` when the
/// bytes are not exactly such a value (torn, truncated, mixed, damaged).
pub fn identify(value: &[u8], len: usize) -> Option<(u64, u64)> {
    if value.len() != len || len < HEADER {
        return None;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&value[..8]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&value[8..16]);
    let (tag, seq) = (u64::from_le_bytes(t), u64::from_le_bytes(s));
    let mut expected = vec![0u8; len - HEADER];
    fill(tag, seq, &mut expected);
    (value[HEADER..] == expected[..]).then_some((tag, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_detects_damage() {
        let v = make(3, 9, 1000);
        assert_eq!(identify(&v, 1000), Some((3, 9)));
        let mut torn = v.to_vec();
        torn[500..].copy_from_slice(&make(3, 10, 1000)[500..]);
        assert_eq!(identify(&torn, 1000), None);
        assert_eq!(identify(&v[..999], 1000), None);
        assert_eq!(make(1, 2, 5).len(), 5);
    }
}
