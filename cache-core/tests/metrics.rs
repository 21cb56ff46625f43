//! What warmcache emits through the metrics facade: the names and labels of
//! `warmcache_core::metrics`, pinned, and values that agree with `Stats`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::MapBackend;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use warmcache_conformance::{FaultConfig, FaultyBackend};
use warmcache_core::bytes::Bytes;
use warmcache_core::{BytesCodec, Cache, Stats, Tier, TierStats, Tiered};

const TIER_COUNTERS: &[&str] = &[
    "warmcache_tier_hits_total",
    "warmcache_tier_misses_total",
    "warmcache_tier_errors_total",
    "warmcache_tier_timeouts_total",
    "warmcache_tier_corrupt_total",
    "warmcache_tier_forged_total",
    "warmcache_tier_skipped_total",
    "warmcache_tier_writes_total",
    "warmcache_tier_write_errors_total",
    "warmcache_tier_dropped_writes_total",
    "warmcache_tier_promotions_total",
    "warmcache_tier_read_bytes_total",
    "warmcache_tier_written_bytes_total",
    "warmcache_tier_leases_total",
    "warmcache_tier_lease_waits_total",
    "warmcache_tier_lease_timeouts_total",
    "warmcache_tier_lease_errors_total",
    "warmcache_tier_trusted_loads_total",
    "warmcache_tier_unpublished_total",
];
const TIER_GAUGES: &[&str] = &[
    "warmcache_tier_pending_writes",
    "warmcache_tier_breaker_open",
    "warmcache_tier_write_breaker_open",
];
const CACHE_COUNTERS: &[&str] = &[
    "warmcache_cache_live_hits_total",
    "warmcache_cache_tier_hits_total",
    "warmcache_cache_misses_total",
    "warmcache_cache_computes_total",
    "warmcache_cache_compute_errors_total",
    "warmcache_cache_compute_panics_total",
    "warmcache_cache_remembered_failures_total",
    "warmcache_cache_waits_total",
    "warmcache_cache_decodes_total",
    "warmcache_cache_decode_errors_total",
    "warmcache_cache_encode_errors_total",
    "warmcache_cache_file_loads_total",
    "warmcache_cache_inserts_total",
    "warmcache_cache_coordinated_total",
];

type Seen = BTreeMap<(MetricKind, String, Vec<(String, String)>), DebugValue>;

fn seen(
    snapshot: Vec<(
        CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )>,
) -> Seen {
    snapshot
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((kind, key.name().to_owned(), labels), value)
        })
        .collect()
}

fn tier(name: &str) -> Vec<(String, String)> {
    vec![
        ("backend".to_owned(), "map".to_owned()),
        ("tier".to_owned(), name.to_owned()),
    ]
}

fn counter(seen: &Seen, name: &str, labels: Vec<(String, String)>) -> u64 {
    match seen.get(&(MetricKind::Counter, name.to_owned(), labels.clone())) {
        Some(DebugValue::Counter(v)) => *v,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

fn upper(input: &&str) -> Result<Bytes, std::io::Error> {
    Ok(Bytes::from(input.to_uppercase()))
}

#[test]
fn every_documented_metric_is_emitted_with_its_labels_and_agrees_with_stats() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let stats = metrics::with_local_recorder(&recorder, || {
        let fast = MapBackend::new();
        let slow = FaultyBackend::new(
            MapBackend::new(),
            FaultConfig {
                slow_rate: 1.0,
                delay: Duration::from_millis(1),
                ..FaultConfig::default()
            },
        );
        let tiers = Tiered::builder()
            .tier(Tier::new(fast).name("fast"))
            .tier(
                Tier::new(std::sync::Arc::new(slow))
                    .name("slow")
                    .background(4),
            )
            .build();
        let cache = Cache::builder("metrics-test", BytesCodec)
            .tiers(tiers)
            .build();
        let input = "wasm";
        cache.get_or_compute(&input, upper).unwrap(); // miss, compute, two writes
        cache.get_or_compute(&input, upper).unwrap(); // live hit
        cache.clear_live();
        cache.get_or_compute(&input, upper).unwrap(); // hit in the fast tier
        cache.flush();
        cache.stats()
    });
    let seen = seen(snapshotter.snapshot().into_vec());

    // The names and labels, all registered from the start.
    for name in TIER_COUNTERS {
        for t in ["fast", "slow"] {
            let key = (MetricKind::Counter, (*name).to_owned(), tier(t));
            assert!(seen.contains_key(&key), "{name} for tier {t} missing");
        }
    }
    for name in TIER_GAUGES {
        for t in ["fast", "slow"] {
            let key = (MetricKind::Gauge, (*name).to_owned(), tier(t));
            assert!(seen.contains_key(&key), "{name} for tier {t} missing");
        }
    }
    let cache = vec![("cache".to_owned(), "metrics-test".to_owned())];
    for name in CACHE_COUNTERS {
        let key = (MetricKind::Counter, (*name).to_owned(), cache.clone());
        assert!(seen.contains_key(&key), "{name} missing");
    }
    for (name, labels) in [
        ("warmcache_tier_read_duration_seconds", tier("fast")),
        ("warmcache_cache_compute_duration_seconds", cache.clone()),
    ] {
        let key = (MetricKind::Histogram, name.to_owned(), labels);
        assert!(
            matches!(seen.get(&key), Some(DebugValue::Histogram(v)) if !v.is_empty()),
            "{name}: {:?}",
            seen.get(&key)
        );
    }
    let known = TIER_COUNTERS.len() * 2 + TIER_GAUGES.len() * 2 + CACHE_COUNTERS.len() + 3;
    assert_eq!(
        seen.len(),
        known,
        "undocumented metrics: {:#?}",
        seen.keys()
    );

    // The pinned names are the tables the snapshots are declared from, and every counter
    // agrees with its snapshot field.
    let sorted = |names: Vec<&str>| -> Vec<String> {
        let mut names: Vec<String> = names.into_iter().map(str::to_owned).collect();
        names.sort();
        names
    };
    assert_eq!(
        sorted(TierStats::COUNTERS.iter().map(|c| c.metric).collect()),
        sorted(TIER_COUNTERS.to_vec())
    );
    assert_eq!(
        sorted(Stats::COUNTERS.iter().map(|c| c.metric).collect()),
        sorted(CACHE_COUNTERS.to_vec())
    );
    for c in TierStats::COUNTERS {
        for (i, t) in ["fast", "slow"].into_iter().enumerate() {
            let field = (c.get)(&stats.tiers[i]);
            assert_eq!(
                counter(&seen, c.metric, tier(t)),
                field,
                "{} of {t}",
                c.field
            );
        }
    }
    for c in Stats::COUNTERS {
        assert_eq!(
            counter(&seen, c.metric, cache.clone()),
            (c.get)(&stats),
            "{}",
            c.field
        );
    }

    // The values are Stats' values.
    assert_eq!(
        counter(&seen, "warmcache_cache_live_hits_total", cache.clone()),
        stats.live_hits
    );
    assert_eq!(
        counter(&seen, "warmcache_cache_computes_total", cache.clone()),
        1
    );
    assert_eq!(
        counter(&seen, "warmcache_cache_tier_hits_total", cache),
        stats.tier_hits
    );
    let fast = &stats.tiers[0];
    assert_eq!(
        counter(&seen, "warmcache_tier_hits_total", tier("fast")),
        fast.hits
    );
    assert_eq!(fast.hits, 1);
    assert_eq!(
        counter(&seen, "warmcache_tier_written_bytes_total", tier("slow")),
        stats.tiers[1].bytes_written
    );
    assert_eq!(
        counter(&seen, "warmcache_tier_writes_total", tier("slow")),
        1
    );
    assert!(matches!(
        seen.get(&(MetricKind::Gauge, "warmcache_tier_pending_writes".to_owned(), tier("slow"))),
        Some(DebugValue::Gauge(v)) if v.0 == 0.0
    ));
}

#[test]
fn an_open_breaker_is_a_gauge_of_one() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let failing = FaultyBackend::new(
            MapBackend::new(),
            FaultConfig {
                error_rate: 1.0,
                ..FaultConfig::default()
            },
        );
        let tiers = Tiered::builder()
            .tier(
                Tier::new(std::sync::Arc::new(failing))
                    .name("down")
                    .circuit_breaker(2, Duration::from_secs(60)),
            )
            .build();
        let cache = Cache::builder("breaker", BytesCodec).tiers(tiers).build();
        for i in 0..4 {
            cache
                .get_or_compute(&["m0", "m1", "m2", "m3"][i], upper)
                .unwrap();
        }
        assert!(cache.stats().tiers[0].breaker_open);
    });
    let seen = seen(snapshotter.snapshot().into_vec());
    assert!(
        matches!(
            seen.get(&(MetricKind::Gauge, "warmcache_tier_breaker_open".to_owned(), tier("down"))),
            Some(DebugValue::Gauge(v)) if v.0 == 1.0
        ),
        "{seen:#?}"
    );
}
