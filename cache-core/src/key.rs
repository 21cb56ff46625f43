//! Cache keys and how they are derived.
//!
//! A [`CacheKey`] is a 32-byte blake3 digest. [`KeyBuilder`] derives one from typed fields,
//! each written with a tag and a length, so two different field sequences never produce the same
//! byte stream and hence (short of a blake3 collision) never the same key.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of the key derivation scheme.
///
/// It is part of every key's blake3 context string. Any change to how fields are encoded must bump
/// it, so that keys derived by an older release can never collide with keys of the new one (they
/// simply stop matching, and the old entries age out). The golden tests in this module pin the
/// encoding and fail loudly when it changes without a bump.
pub const KEY_SCHEMA_VERSION: u32 = 1;

/// A 32-byte digest naming one cache entry.
///
/// Displayed and parsed as 64 lowercase hex digits. Serialized as a hex string in human-readable
/// formats and as 32 raw bytes otherwise.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Length of a key in bytes.
    pub const LEN: usize = 32;

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key spread uniformly from `seed` (splitmix64), not derived from any input.
    ///
    /// For bounded backends that evict by sampling: start a scan of their key index at
    /// `CacheKey::pseudo_random(counter)` to read a few entries from a random position.
    pub fn pseudo_random(seed: u64) -> Self {
        let mut out = [0u8; 32];
        let mut x = seed;
        for chunk in out.chunks_mut(8) {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        Self(out)
    }

    /// The key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Cannot fail: the buffer is exactly twice the input length.
        if hex::encode_to_slice(self.0, &mut buf).is_err() {
            return Err(fmt::Error);
        }
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

/// Error returned when parsing a [`CacheKey`] from text fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache key {input:?}: expected 64 hex digits")]
pub struct ParseKeyError {
    input: String,
}

impl FromStr for CacheKey {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseKeyError {
            input: s.chars().take(80).collect(),
        })?;
        Ok(Self(out))
    }
}

impl From<[u8; 32]> for CacheKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for CacheKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for CacheKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for CacheKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = CacheKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cache key as 64 hex digits or 32 bytes")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<CacheKey, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<CacheKey, E> {
                <[u8; 32]>::try_from(v)
                    .map(CacheKey)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }

        if deserializer.is_human_readable() {
            deserializer.deserialize_str(KeyVisitor)
        } else {
            deserializer.deserialize_bytes(KeyVisitor)
        }
    }
}

// Field tags. Each field is `tag (1 byte) || length (u64 LE) || content`.
const TAG_BYTES: u8 = 1;
const TAG_STR: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_BOOL: u8 = 4;
const TAG_HASH: u8 = 5;
const TAG_KEY: u8 = 6;
/// Fields longer than this are written as their blake3 digest (see `KeyBuilder::field`).
const INLINE_FIELD_MAX: usize = 1024;

/// A key namespace with its blake3 context prepared once.
///
/// [`KeyBuilder::new`] derives the context on every call (a few hundred nanoseconds); hot paths
/// that build many keys in one namespace keep a `Namespace` and call [`Namespace::builder`].
#[derive(Clone)]
pub struct Namespace {
    name: String,
    prepared: blake3::Hasher,
}

impl Namespace {
    /// Prepares the namespace `name`.
    pub fn new(name: &str) -> Self {
        let context = format!("warmcache key schema {KEY_SCHEMA_VERSION} namespace {name}");
        Self {
            name: name.to_owned(),
            prepared: blake3::Hasher::new_derive_key(&context),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts a key in this namespace.
    pub fn builder(&self) -> KeyBuilder {
        KeyBuilder {
            hasher: self.prepared.clone(),
        }
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Namespace").field(&self.name).finish()
    }
}

/// Derives a [`CacheKey`] from typed fields.
///
/// The hasher runs in blake3's `derive_key` mode with a context string holding the project
/// name, [`KEY_SCHEMA_VERSION`] and the namespace, so keys of different namespaces or schema
/// versions never meet. Every field is framed with a type tag and a length.
///
/// Integers are encoded by value, not by width: `integer(5u8)` and `integer(5u64)` give the same
/// key, on every host.
///
/// ```
/// use warmcache_core::KeyBuilder;
///
/// let a = KeyBuilder::new("example").str("opt-level").integer(2u8).finish();
/// let b = KeyBuilder::new("example").str("opt-level").integer(2u64).finish();
/// let c = KeyBuilder::new("example").str("opt-level").integer(3u8).finish();
/// assert_eq!(a, b);
/// assert_ne!(a, c);
/// ```
#[derive(Clone)]
pub struct KeyBuilder {
    hasher: blake3::Hasher,
}

impl KeyBuilder {
    /// Starts a key in `namespace`.
    pub fn new(namespace: &str) -> Self {
        Namespace::new(namespace).builder()
    }

    fn field(&mut self, tag: u8, content: &[u8]) -> &mut Self {
        self.hasher.update(&[tag]);
        self.hasher.update(&(content.len() as u64).to_le_bytes());
        if content.len() > INLINE_FIELD_MAX {
            // Hashed on its own, a large field starts at a chunk boundary, where blake3's SIMD
            // tree hashing is fastest; fed after the 9-byte header it ran about 5% slower.
            // The length written above says which form follows, so framing stays unambiguous.
            self.hasher.update(blake3::hash(content).as_bytes());
        } else {
            self.hasher.update(content);
        }
        self
    }

    /// Adds a byte string.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.field(TAG_BYTES, bytes)
    }

    /// Adds a UTF-8 string. A string and the same bytes added with [`bytes`](Self::bytes) give
    /// different keys.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.field(TAG_STR, s.as_bytes())
    }

    /// Adds an integer of any primitive width. Equal values give equal keys whatever their type.
    pub fn integer<T: KeyInt>(&mut self, value: T) -> &mut Self {
        let (negative, magnitude) = value.sign_magnitude();
        let mut buf = [0u8; 17];
        buf[0] = u8::from(negative && magnitude != 0);
        buf[1..].copy_from_slice(&magnitude.to_le_bytes());
        self.field(TAG_INT, &buf)
    }

    /// Adds a boolean.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.field(TAG_BOOL, &[u8::from(value)])
    }

    /// Adds another key (for example a content hash the caller already holds as a key).
    pub fn key(&mut self, key: &CacheKey) -> &mut Self {
        self.field(TAG_KEY, key.as_bytes())
    }

    /// Adds any [`Hash`] value through [`CanonicalHasher`], which writes integers little-endian
    /// and `usize`/`isize` as 64 bits, so the result is the same on every host.
    ///
    /// The value's hash stream is digested separately and added as one framed field, so it cannot
    /// run into the fields around it.
    pub fn hash<T: Hash + ?Sized>(&mut self, value: &T) -> &mut Self {
        let mut inner = CanonicalHasher::new();
        value.hash(&mut inner);
        let digest = inner.digest();
        self.field(TAG_HASH, digest.as_bytes())
    }

    /// Finishes the key. The builder may keep being used; fields added later extend the same
    /// stream.
    pub fn finish(&self) -> CacheKey {
        CacheKey(*self.hasher.finalize().as_bytes())
    }
}

impl fmt::Debug for KeyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBuilder").finish_non_exhaustive()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Primitive integers accepted by [`KeyBuilder::integer`]. Sealed.
pub trait KeyInt: sealed::Sealed + Copy {
    /// The value as a sign flag and a magnitude, which is unique for every value of every
    /// primitive integer type.
    fn sign_magnitude(self) -> (bool, u128);
}

macro_rules! key_int_unsigned {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl KeyInt for $t {
            fn sign_magnitude(self) -> (bool, u128) {
                (false, self as u128)
            }
        }
    )*};
}

macro_rules! key_int_signed {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl KeyInt for $t {
            fn sign_magnitude(self) -> (bool, u128) {
                (self < 0, (self as i128).unsigned_abs())
            }
        }
    )*};
}

key_int_unsigned!(u8, u16, u32, u64, u128, usize);
key_int_signed!(i8, i16, i32, i64, i128, isize);

/// A [`Hasher`] with a host-independent byte stream, for feeding `impl Hash` values into keys.
///
/// Integers are written little-endian; `usize` and `isize` are widened to 64 bits, so a 32-bit
/// and a 64-bit host produce the same stream. The stream is digested with blake3.
/// [`Hasher::finish`] returns the first 8 bytes of that digest; [`CanonicalHasher::digest`]
/// returns all 32.
///
/// Use it directly to turn foreign hash-like values (for example wasmtime's
/// `Engine::precompile_compatibility_hash`) into key material.
#[derive(Clone)]
pub struct CanonicalHasher {
    hasher: blake3::Hasher,
}

impl CanonicalHasher {
    /// An empty stream.
    pub fn new() -> Self {
        Self {
            hasher: blake3::Hasher::new_derive_key("warmcache canonical hasher v1"),
        }
    }

    /// The blake3 digest of everything written so far.
    pub fn digest(&self) -> blake3::Hash {
        self.hasher.finalize()
    }
}

impl Default for CanonicalHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CanonicalHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanonicalHasher").finish_non_exhaustive()
    }
}

impl Hasher for CanonicalHasher {
    fn finish(&self) -> u64 {
        let digest = self.digest();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write(&(i as u64).to_le_bytes());
    }
    fn write_i8(&mut self, i: i8) {
        self.write(&i.to_le_bytes());
    }
    fn write_i16(&mut self, i: i16) {
        self.write(&i.to_le_bytes());
    }
    fn write_i32(&mut self, i: i32) {
        self.write(&i.to_le_bytes());
    }
    fn write_i64(&mut self, i: i64) {
        self.write(&i.to_le_bytes());
    }
    fn write_i128(&mut self, i: i128) {
        self.write(&i.to_le_bytes());
    }
    fn write_isize(&mut self, i: isize) {
        self.write(&(i as i64).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Field {
        Bytes(Vec<u8>),
        Str(String),
        Int(i128),
        Bool(bool),
        Hash(Vec<u32>),
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Field::Bytes),
            // Across the inline/digest boundary of large fields.
            (1020usize..1030, any::<u8>()).prop_map(|(n, b)| Field::Bytes(vec![b; n])),
            "[a-c]{0,6}".prop_map(Field::Str),
            any::<i128>().prop_map(Field::Int),
            (-3i128..3).prop_map(Field::Int),
            any::<bool>().prop_map(Field::Bool),
            proptest::collection::vec(0u32..4, 0..3).prop_map(Field::Hash),
        ]
    }

    fn key_of(fields: &[Field]) -> CacheKey {
        let mut b = KeyBuilder::new("prop");
        for f in fields {
            match f {
                Field::Bytes(v) => b.bytes(v),
                Field::Str(s) => b.str(s),
                Field::Int(i) => b.integer(*i),
                Field::Bool(x) => b.bool(*x),
                Field::Hash(v) => b.hash(v),
            };
        }
        b.finish()
    }

    fn same(a: &[Field], b: &[Field]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| match (x, y) {
                (Field::Bytes(p), Field::Bytes(q)) => p == q,
                (Field::Str(p), Field::Str(q)) => p == q,
                (Field::Int(p), Field::Int(q)) => p == q,
                (Field::Bool(p), Field::Bool(q)) => p == q,
                (Field::Hash(p), Field::Hash(q)) => p == q,
                _ => false,
            })
    }

    proptest! {
        #[test]
        fn different_field_sequences_give_different_keys(
            a in proptest::collection::vec(field(), 0..5),
            b in proptest::collection::vec(field(), 0..5),
        ) {
            prop_assert_eq!(same(&a, &b), key_of(&a) == key_of(&b));
        }

        #[test]
        fn concatenation_does_not_collide(a in "[ab]{0,4}", b in "[ab]{0,4}", c in "[ab]{0,4}") {
            // "ab" + "" must differ from "a" + "b": framing, not concatenation.
            let k1 = KeyBuilder::new("n").str(&a).str(&format!("{b}{c}")).finish();
            let k2 = KeyBuilder::new("n").str(&format!("{a}{b}")).str(&c).finish();
            prop_assert_eq!(b.is_empty(), k1 == k2);
        }

        #[test]
        fn integer_width_does_not_matter(v in any::<u8>(), s in any::<i8>()) {
            let k = |f: &dyn Fn(&mut KeyBuilder)| { let mut b = KeyBuilder::new("w"); f(&mut b); b.finish() };
            let reference = k(&|b| { b.integer(v as u128); });
            prop_assert_eq!(reference, k(&|b| { b.integer(v); }));
            prop_assert_eq!(reference, k(&|b| { b.integer(u16::from(v)); }));
            prop_assert_eq!(reference, k(&|b| { b.integer(u32::from(v)); }));
            prop_assert_eq!(reference, k(&|b| { b.integer(u64::from(v)); }));
            prop_assert_eq!(reference, k(&|b| { b.integer(v as usize); }));
            prop_assert_eq!(reference, k(&|b| { b.integer(i16::from(v)); }));
            prop_assert_eq!(reference, k(&|b| { b.integer(i64::from(v)); }));
            let signed = k(&|b| { b.integer(s); });
            prop_assert_eq!(signed, k(&|b| { b.integer(i16::from(s)); }));
            prop_assert_eq!(signed, k(&|b| { b.integer(i32::from(s)); }));
            prop_assert_eq!(signed, k(&|b| { b.integer(i64::from(s)); }));
            prop_assert_eq!(signed, k(&|b| { b.integer(s as isize); }));
            prop_assert_eq!(signed, k(&|b| { b.integer(i128::from(s)); }));
        }

        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let key = CacheKey::from_bytes(bytes);
            prop_assert_eq!(key.to_string().parse::<CacheKey>().unwrap(), key);
        }
    }

    #[test]
    fn extreme_integers_are_distinct() {
        let k = |v: i128| KeyBuilder::new("e").integer(v).finish();
        let max = KeyBuilder::new("e").integer(u128::MAX).finish();
        assert_ne!(k(-1), max);
        assert_ne!(
            k(i128::MIN),
            KeyBuilder::new("e").integer(1u128 << 127).finish()
        );
        assert_eq!(k(0), KeyBuilder::new("e").integer(-0i64).finish());
    }

    #[test]
    fn namespaces_separate_keys() {
        let a = KeyBuilder::new("a").str("x").finish();
        let b = KeyBuilder::new("b").str("x").finish();
        assert_ne!(a, b);
        assert_eq!(Namespace::new("a").builder().str("x").finish(), a);
    }

    #[test]
    fn canonical_hasher_widens_usize() {
        let mut a = CanonicalHasher::new();
        a.write_usize(7);
        let mut b = CanonicalHasher::new();
        b.write_u64(7);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn bad_hex_is_an_error() {
        assert!("zz".parse::<CacheKey>().is_err());
        assert!("00".parse::<CacheKey>().is_err());
        let err = "xyz".parse::<CacheKey>().unwrap_err();
        assert!(err.to_string().contains("64 hex digits"));
    }

    /// Pins the encoding. If this fails you changed how keys are derived: bump
    /// KEY_SCHEMA_VERSION and update the constants, never only the constants.
    #[test]
    fn golden_keys() {
        let large: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let cases: [(CacheKey, &str); 7] = [
            (KeyBuilder::new("golden").finish(), GOLDEN[0]),
            (KeyBuilder::new("golden").str("hello").finish(), GOLDEN[1]),
            (
                KeyBuilder::new("golden")
                    .bytes(b"\x00\x01")
                    .integer(-42i32)
                    .integer(u64::MAX)
                    .bool(true)
                    .finish(),
                GOLDEN[2],
            ),
            (
                KeyBuilder::new("wasmtime-module")
                    .hash(&("x86_64", 7usize, [1u8, 2, 3]))
                    .finish(),
                GOLDEN[3],
            ),
            (
                KeyBuilder::new("golden")
                    .key(&CacheKey::from_bytes([7; 32]))
                    .finish(),
                GOLDEN[4],
            ),
            (
                KeyBuilder::new("golden").bytes(&large[..1024]).finish(),
                GOLDEN[5],
            ),
            (KeyBuilder::new("golden").bytes(&large).finish(), GOLDEN[6]),
        ];
        for (i, (key, expected)) in cases.iter().enumerate() {
            assert_eq!(key.to_hex(), *expected, "golden key {i} changed");
        }
    }

    const GOLDEN: [&str; 7] = [
        "59a9bb2ecfb9e2988654c22d9d2a3487e8dbb6d6a096ee8c0e17030ae698f76c",
        "52e9467971e6767a4a8fa220007875ef6f7cabe5650155d8d8a8c7dce1953c51",
        "b656c69aa2b2061ca6f9a10236973c7204fd3fc918d7d3825fd6d71ed8a2437d",
        "c44cefdcebe3cebd2d8ba16e459a174a82ad298636d625e1ff190c08f57439c0",
        "fb354cb8d1f220ee87f0c76988ef321057e7509a596cc3824d7237d4f3434ca9",
        "12dac0bc28d523480468a2f8adf3e8555dc2c981aa898b6dd657c555dfccafad",
        "68b31f83baefd0811b6857baf6617145b1f49195e087c50cc8f5ee9171e98126",
    ];
}
