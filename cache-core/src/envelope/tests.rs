use super::layout::*;
use super::*;
use bytes::Bytes;
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
