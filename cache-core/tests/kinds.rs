//! Entries of another kind or value type are misses, and are rejected before anything copies
//! them (issue 11, bugs 3 and 4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::MapBackend;
use warmcache_core::bytes::Bytes;
use warmcache_core::{BytesCodec, Cache, Integrity, PostcardCodec, Tier, Tiered};

fn render(input: &str) -> Result<Bytes, std::io::Error> {
    Ok(Bytes::from(format!("<{input}>")))
}

/// An entry under the cache's key, verified but sealed by another codec kind, sits in the slow
/// tier: it is rejected inside verification, so it is never copied into the fast tier.
#[test]
fn a_wrong_kind_entry_is_rejected_before_promotion() {
    let (fast, slow) = (MapBackend::new(), MapBackend::new());
    let tiers = Tiered::builder()
        .tier(Tier::new(fast.clone()))
        .tier(Tier::new(slow.clone()))
        .build();
    let cache = Cache::builder("kinds", BytesCodec).tiers(tiers).build();
    let key = cache.key_for("home");
    let foreign_kind = 0x5eed;
    slow.set_raw(
        &key,
        Integrity::plain().seal(&key, foreign_kind, "someone else", b"not bytes"),
    );

    let value = cache.get_or_compute("home", render).unwrap();
    assert_eq!(&value[..], b"<home>");
    let stats = cache.stats();
    assert_eq!(stats.computes, 1);
    assert_eq!(
        stats.tiers[0].promotions, 0,
        "the wrong-kind entry was promoted"
    );
    assert_eq!(stats.tiers[1].hits, 0);
    assert_eq!(stats.corrupt(), 1);
    // The slow tier now holds the computed value, sealed with the cache's own kind.
    let stored = slow.raw(&key).unwrap();
    assert_eq!(
        Integrity::plain().open(&key, &stored).unwrap().payload(),
        &value[..]
    );
}

/// Two caches share a namespace and a tier, one storing `Vec<u8>`, one `String`: a value written
/// as one type is a miss for the other, never decoded as it.
#[test]
fn postcard_values_of_another_type_are_misses() {
    let tier = MapBackend::new();
    let bytes_cache = Cache::builder("shared", PostcardCodec::<Vec<u8>>::new("test/bytes v1"))
        .tiers(Tiered::builder().tier(Tier::new(tier.clone())).build())
        .build();
    let text_cache = Cache::builder("shared", PostcardCodec::<String>::new("test/text v1"))
        .tiers(Tiered::builder().tier(Tier::new(tier.clone())).build())
        .build();
    fn as_bytes(n: &u32) -> Result<Vec<u8>, std::io::Error> {
        Ok(vec![1, 2, *n as u8])
    }
    fn as_text(n: &u32) -> Result<String, std::io::Error> {
        Ok(format!("n={n}"))
    }
    assert_eq!(
        bytes_cache.get_or_compute(&7, as_bytes).unwrap(),
        vec![1, 2, 7]
    );
    assert_eq!(text_cache.get_or_compute(&7, as_text).unwrap(), "n=7");
    let stats = text_cache.stats();
    assert_eq!(
        (stats.computes, stats.tier_hits, stats.decode_errors),
        (1, 0, 0)
    );
    // Each type reads its own entry back.
    bytes_cache.clear_live();
    text_cache.clear_live();
    assert_eq!(
        bytes_cache.get_or_compute(&7, as_bytes).unwrap(),
        vec![1, 2, 7]
    );
    assert_eq!(text_cache.get_or_compute(&7, as_text).unwrap(), "n=7");
    assert_eq!(
        bytes_cache.stats().tier_hits + text_cache.stats().tier_hits,
        2
    );
}
