//! Shared helpers for the wasmtime cache tests: small modules, tiers, calls.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use warmcache_core::{Tier, Tiered};
use warmcache_memory::MemoryBackend;
use wasmtime::{Engine, Instance, Module, Store};

/// A module whose export `answer` returns 42.
pub const ANSWER: &str = r#"(module (func (export "answer") (result i32) i32.const 42))"#;

/// A module with SIMD and floats in it, so settings that change code really change it.
pub const SIMD: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "answer") (result i32) i32.const 42)
  (func (export "sum") (param f32 f32) (result f32)
    local.get 0 local.get 1 f32.add)
  (func (export "splat") (param i32) (result v128)
    local.get 0 i32x4.splat))
"#;

/// A module with `n` functions (the first exported as `answer`, returning 42); `variant`
/// changes the body of the last one only.
pub fn many_functions(n: usize, variant: i32) -> String {
    let mut wat = String::from("(module\n");
    wat.push_str("  (func (export \"answer\") (result i32) i32.const 42)\n");
    for i in 1..n {
        let constant = if i == n - 1 { variant } else { i as i32 };
        wat.push_str(&format!(
            "  (func $f{i} (param i32) (result i32)\n    local.get 0 i32.const {constant} i32.mul i32.const {i} i32.add\n    local.get 0 i32.const 3 i32.shl i32.xor)\n"
        ));
    }
    wat.push(')');
    wat
}

/// A memory backend tier stack, returning the backend to inspect or damage entries.
pub fn memory_tiers() -> (Arc<MemoryBackend>, Tiered) {
    let memory = Arc::new(MemoryBackend::with_capacity(256 << 20).unwrap());
    let tiers = Tiered::builder().tier(Tier::new(memory.clone())).build();
    (memory, tiers)
}

/// Calls `answer` on a fresh instance of `module`.
pub fn call_answer(engine: &Engine, module: &Module) -> i32 {
    let mut store = Store::new(engine, ());
    // Engines with fuel or epochs need a budget; on others these calls are refused harmlessly.
    let _ = store.set_fuel(u64::MAX);
    store.set_epoch_deadline(u64::MAX);
    let instance = Instance::new(&mut store, module, &[]).unwrap();
    let answer = instance
        .get_typed_func::<(), i32>(&mut store, "answer")
        .unwrap();
    answer.call(&mut store, ()).unwrap()
}
