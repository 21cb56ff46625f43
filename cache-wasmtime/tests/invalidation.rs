//! Keys that cannot go stale: every setting that changes compiled code gets its own entry, and
//! compiling again under the same settings hits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use warmcache_wasmtime::ContentHash;

use std::collections::HashSet;

use common::{SIMD, call_answer, memory_tiers};
use warmcache_wasmtime::{Error, ModuleCache, WASMTIME_VERSION};
use wasmtime::{Config, Engine, OptLevel};

type Setting = (&'static str, fn(&mut Config));

const SETTINGS: &[Setting] = &[
    ("default", |_| {}),
    ("opt level none", |c| {
        c.cranelift_opt_level(OptLevel::None);
    }),
    ("opt level speed and size", |c| {
        c.cranelift_opt_level(OptLevel::SpeedAndSize);
    }),
    ("debug info", |c| {
        c.debug_info(true);
    }),
    ("consume fuel", |c| {
        c.consume_fuel(true);
    }),
    ("epoch interruption", |c| {
        c.epoch_interruption(true);
    }),
    ("simd off", |c| {
        c.wasm_relaxed_simd(false).wasm_simd(false);
    }),
    ("memory reservation", |c| {
        c.memory_reservation(1 << 24);
    }),
    ("memory guard size", |c| {
        c.memory_guard_size(1 << 16);
    }),
    ("signals-based traps off", |c| {
        c.signals_based_traps(false);
    }),
    ("nan canonicalization", |c| {
        c.cranelift_nan_canonicalization(true);
    }),
];

/// A module without SIMD, so it also compiles with SIMD disabled.
const SCALAR: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "answer") (result i32) i32.const 42)
  (func (export "sum") (param f32 f32) (result f32) local.get 0 local.get 1 f32.add)
  (func (export "load") (param i32) (result i32) local.get 0 i32.load))
"#;

fn engine(setting: fn(&mut Config)) -> Engine {
    let mut config = Config::new();
    setting(&mut config);
    Engine::new(&config).unwrap()
}

#[test]
fn every_setting_has_its_own_entry_and_hits_again() {
    let (_memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let mut keys = HashSet::new();
    for (i, (name, setting)) in SETTINGS.iter().enumerate() {
        let engine = engine(*setting);
        let module = cache
            .get_or_compile(&engine, SCALAR.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(call_answer(&engine, &module), 42, "{name}");
        assert_eq!(cache.stats().computes, i as u64 + 1, "{name} must compile");
        assert!(
            keys.insert(cache.key_for(&engine, &ContentHash::of(SCALAR.as_bytes()))),
            "{name} shares a key with an earlier setting"
        );

        // The same settings hit: in process, and through the byte tier from a second engine.
        cache.get_or_compile(&engine, SCALAR.as_bytes()).unwrap();
        let twin = self::engine(*setting);
        let loaded = cache.get_or_compile(&twin, SCALAR.as_bytes()).unwrap();
        assert!(
            Engine::same(loaded.engine(), &twin),
            "{name}: handed another engine's module"
        );
        assert_eq!(call_answer(&twin, &loaded), 42, "{name}");
        let stats = cache.stats();
        assert_eq!(stats.computes, i as u64 + 1, "{name} compiled again");
        assert_eq!(
            stats.tier_hits,
            i as u64 + 1,
            "{name}: second engine missed the tier"
        );
        assert_eq!(stats.live_hits, i as u64 + 1, "{name}");
    }
    assert_eq!(cache.stats().decode_errors, 0);
}

#[test]
fn disabled_feature_is_a_clear_error_and_a_distinct_key() {
    let (memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let simd = engine(|_| {});
    let no_simd = engine(|c| {
        c.wasm_relaxed_simd(false).wasm_simd(false);
    });
    assert_ne!(
        cache.key_for(&simd, &ContentHash::of(SIMD.as_bytes())),
        cache.key_for(&no_simd, &ContentHash::of(SIMD.as_bytes()))
    );
    cache.get_or_compile(&simd, SIMD.as_bytes()).unwrap();
    let err = cache.get_or_compile(&no_simd, SIMD.as_bytes()).unwrap_err();
    assert!(matches!(err, Error::Compile { .. }), "{err}");
    assert!(err.to_string().contains("SIMD"), "{err}");
    // Only the successful compile is stored.
    let usage = futures::executor::block_on(warmcache_core::Backend::usage(&*memory)).unwrap();
    assert_eq!(usage.entries, 1);
}

#[test]
fn cross_compiled_artifacts_have_their_own_key_and_are_never_loaded_here() {
    let (_memory, tiers) = memory_tiers();
    let cache = ModuleCache::new(tiers);
    let host = engine(|_| {});
    let aarch64 = engine(|c| {
        c.target("aarch64-unknown-linux-gnu").unwrap();
    });
    let wasm = SCALAR.as_bytes();
    assert_ne!(
        cache.key_for(&host, &ContentHash::of(wasm)),
        cache.key_for(&aarch64, &ContentHash::of(wasm))
    );

    let first = cache.precompile(&aarch64, wasm).unwrap();
    assert!(!first.already_cached);
    assert!(first.size > 0);
    assert!(cache.precompile(&aarch64, wasm).unwrap().already_cached);

    // The host engine neither sees nor loads the aarch64 artifact.
    let module = cache.get_or_compile(&host, wasm).unwrap();
    assert_eq!(call_answer(&host, &module), 42);
    let stats = cache.stats();
    assert_eq!(stats.computes, 2);
    assert_eq!(stats.tier_hits, 0);
    assert_eq!(stats.decodes, 0);

    if cfg!(target_arch = "aarch64") {
        return;
    }
    // Asking to load for a foreign target is a clear error that keeps the stored artifact.
    let err = cache.get_or_compile(&aarch64, wasm).unwrap_err();
    assert!(matches!(err, Error::Load { .. }), "{err}");
    assert!(cache.precompile(&aarch64, wasm).unwrap().already_cached);
}

#[test]
fn wasmtime_version_constant_matches_the_linked_wasmtime() {
    // wasmtime writes its major version, length-prefixed, into every artifact's engine section
    // and rejects artifacts of another; the constant must agree with it.
    let engine = Engine::default();
    let artifact = engine.precompile_module(SCALAR.as_bytes()).unwrap();
    let major = WASMTIME_VERSION.split('.').next().unwrap();
    let mut needle = vec![major.len() as u8];
    needle.extend_from_slice(major.as_bytes());
    assert!(
        artifact.windows(needle.len()).any(|w| w == needle),
        "artifact was not written by wasmtime {major}"
    );
}
