//! The envelope's on-disk format: entries written by earlier releases keep verifying.
//!
//! `tests/fixtures/v1-*.bin` were written by warmcache-core 0.1.0 (envelope format version 1,
//! before compute times were a field), `v2-*.bin` by the last release writing version 2 (before
//! signatures), `v3-*.bin` by the last release writing version 3 (before key inputs), all with
//! `Integrity::seal_at`, and are committed as they are.
//! A change that stops this release reading them fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use warmcache_core::bytes::Bytes;
use warmcache_core::{
    Compression, FORMAT_VERSION, Integrity, KeyBuilder, MAX_INPUTS_LEN, Origin, SigningKey, inspect,
};

const SECRET: &[u8] = b"warmcache fixture secret, 32 bytes or more";
const CREATED_MS: u64 = 1_767_225_600_000;

fn fixture(name: &str) -> Bytes {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap())
}

fn payload() -> Vec<u8> {
    b"warmcache envelope format 1 fixture payload\n".repeat(20)
}

#[test]
fn version_1_entries_still_verify() {
    fixtures_verify(1, 0);
}

#[test]
fn version_2_entries_still_verify() {
    fixtures_verify(2, 4321);
}

#[test]
fn version_3_entries_still_verify() {
    fixtures_verify(3, 4321);
}

/// The fixtures of format `version`, written with compute time `compute_ms`, verify, decode
/// and stay authenticated.
fn fixtures_verify(version: u16, compute_ms: u64) {
    let cases = [
        ("plain", Integrity::plain(), false),
        ("keyed", Integrity::keyed(SECRET), false),
        ("keyed-zstd", Integrity::keyed(SECRET), true),
    ];
    for (kind, integrity, compressed) in cases {
        let name = format!("v{version}-{kind}.bin");
        let name = name.as_str();
        let key = KeyBuilder::new("fixture").str(name).finish();
        let stored = fixture(name);
        let entry = integrity.open(&key, &stored).unwrap();
        assert_eq!(entry.payload(), &payload()[..], "{name}");
        let meta = entry.meta();
        assert_eq!(meta.version, version, "{name}");
        assert_eq!(meta.kind, 2);
        assert_eq!(meta.created_ms, CREATED_MS);
        // Version 1 recorded no compute time.
        assert_eq!(meta.compute_ms, compute_ms, "{name}");
        assert_eq!(meta.producer, "warmcache-core 0.1.0 compile_ms=1234");
        assert_eq!(meta.compressed, compressed);
        assert_eq!(inspect(&stored).unwrap(), *meta);
        // Still authenticated: a flipped byte or another secret is refused.
        let mut damaged = stored.to_vec();
        damaged[10] ^= 1;
        assert!(integrity.open(&key, &Bytes::from(damaged)).is_err());
        if integrity.is_keyed() {
            assert!(
                Integrity::keyed(b"another secret")
                    .open(&key, &stored)
                    .is_err()
            );
        }
    }
}

#[test]
fn this_release_writes_version_4_with_key_inputs_and_signs_when_it_has_a_key() {
    let key = KeyBuilder::new("fixture").str("v4").finish();
    let origin = Origin::new(2, "warmcache-core 0.1.0 compile_ms=1234").compute_ms(4321);
    let sealed =
        Integrity::plain().seal_at(&key, &origin, CREATED_MS, &payload(), Compression::None);
    let meta = inspect(&sealed).unwrap();
    assert_eq!(FORMAT_VERSION, 4);
    assert_eq!((meta.version, meta.compute_ms), (4, 4321));
    assert_eq!((meta.signer, meta.inputs.as_str()), (None, ""));
    // Version 4 adds the inputs' length and the inputs to version 3's metadata.
    assert_eq!(sealed.len(), fixture("v3-plain.bin").len() + 2);
    let inputs = "schema=1\nopt_level=speed\ncontent=ab12";
    let described = Integrity::keyed(SECRET).seal_at(
        &key,
        &origin.clone().inputs(inputs),
        CREATED_MS,
        &payload(),
        Compression::None,
    );
    assert_eq!(sealed.len() + inputs.len(), described.len());
    let entry = Integrity::keyed(SECRET).open(&key, &described).unwrap();
    assert_eq!(entry.meta().inputs, inputs);
    assert_eq!(entry.payload(), &payload()[..]);
    // Inputs over the limit are cut at a line: no field is recorded half.
    let long: String = (0..400).map(|i| format!("field{i}=value{i}\n")).collect();
    let cut = inspect(&Integrity::plain().seal_at(
        &key,
        &origin.clone().inputs(long.as_str()),
        CREATED_MS,
        &payload(),
        Compression::None,
    ))
    .unwrap()
    .inputs;
    assert!(cut.len() <= MAX_INPUTS_LEN && !cut.is_empty());
    assert!(long.starts_with(&cut) && long[cut.len()..].starts_with('\n'));
    let signer = SigningKey::generate().unwrap();
    let signed = Integrity::plain().signing(signer.clone()).seal_at(
        &key,
        &origin,
        CREATED_MS,
        &payload(),
        Compression::None,
    );
    assert_eq!(signed.len(), sealed.len() + 32 + 64);
    assert_eq!(
        inspect(&signed).unwrap().signer,
        Some(signer.public_key().id())
    );
}
