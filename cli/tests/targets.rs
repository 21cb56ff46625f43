//! `--target`, `--cranelift-set` and their config keys: a tier filled for a fleet's target is
//! hit by nodes configured the same way, and only by them; and `run --argv0`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Env, ok, stderr};
use warmcache_wasmtime::CompileTarget;

/// Target flags for a baseline of this host's architecture with one CPU feature on, which any
/// machine running the tests has.
fn baseline_flags() -> Vec<String> {
    let mut flags = vec!["--target".to_owned(), CompileTarget::host_triple()];
    if cfg!(target_arch = "x86_64") {
        flags.extend(["--cranelift-set".to_owned(), "has_sse41=true".to_owned()]);
    }
    flags
}

fn run_v(env: &Env, flags: &[String], module: &str) -> String {
    let out = env
        .command()
        .args(flags)
        .args(["-v", "run", module])
        .output()
        .unwrap();
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    stderr(&out)
}

#[test]
fn a_baseline_precompile_is_hit_by_nodes_with_the_same_flags_only() {
    let env = Env::new();
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    let flags = baseline_flags();
    let out = env
        .command()
        .args(&flags)
        .args(["precompile", hello])
        .output()
        .unwrap();
    ok(&out);

    let how = run_v(&env, &flags, hello);
    assert!(how.contains("loaded from disk tier"), "{how}");
    // Without the flags this host's own engine derives another key: a miss.
    let how = run_v(&env, &[], hello);
    assert!(how.contains("compiled"), "{how}");
    // The same target in the config file is the same configuration.
    let mut file = format!("[engine]\ntarget = \"{}\"\n", CompileTarget::host_triple());
    if cfg!(target_arch = "x86_64") {
        file.push_str("cranelift_set = [\"has_sse41=true\"]\n");
    }
    let config = env.write("fleet.toml", file);
    let how = run_v(
        &env,
        &["--config".to_owned(), config.display().to_string()],
        hello,
    );
    assert!(how.contains("loaded from disk tier"), "{how}");
}

#[test]
fn an_aarch64_precompile_is_stored_for_aarch64_nodes_and_never_run_here() {
    if CompileTarget::host_triple().starts_with("aarch64") {
        eprintln!("skipped: this host is aarch64");
        return;
    }
    let env = Env::new();
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    let aarch64 = ["--target", "aarch64-unknown-linux-gnu"];
    let out = env
        .command()
        .args(aarch64)
        .args(["precompile", hello])
        .output()
        .unwrap();
    ok(&out);
    let out = env.run(&["ls"]);
    assert_eq!(ok(&out).lines().filter(|l| l.contains("module")).count(), 1);

    let out = env
        .command()
        .args(aarch64)
        .args(["run", hello])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not this host"), "{}", stderr(&out));
    // This host's engine never loads the aarch64 entry: it compiles its own.
    let how = run_v(&env, &[], hello);
    assert!(how.contains("compiled"), "{how}");
}

#[test]
fn bad_targets_and_settings_are_refused_clearly() {
    let env = Env::new();
    let hello = common::hello();
    let out = env.run(&[
        "--target",
        "no-such-triple-anywhere",
        "precompile",
        hello.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no-such-triple-anywhere"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&[
        "--cranelift-set",
        "nonsense",
        "run",
        hello.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("NAME=VALUE"), "{}", stderr(&out));
    let out = env.run(&[
        "--cranelift-set",
        "has_sse41=true",
        "run",
        hello.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("needs a target"), "{}", stderr(&out));
}

/// A WASI command that prints its first argument (argv[0]).
const PRINTS_ARGV0: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $p i32) (local $n i32)
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 100) (i32.const 1000)))
    (local.set $p (i32.load (i32.const 100)))
    (if (i32.gt_u (i32.load (i32.const 0)) (i32.const 1))
      (then (local.set $n (i32.sub (i32.sub (i32.load (i32.const 104)) (local.get $p)) (i32.const 1))))
      (else (local.set $n (i32.sub (i32.load (i32.const 4)) (i32.const 1)))))
    (i32.store (i32.const 8) (local.get $p))
    (i32.store (i32.const 12) (local.get $n))
    (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))"#;

#[test]
fn argv0_names_the_program_for_multi_call_binaries() {
    let env = Env::new();
    let module = env.write("multi.wat", PRINTS_ARGV0);
    let module = module.to_str().unwrap();
    let out = env.run(&["run", module]);
    assert_eq!(ok(&out), "multi.wat");
    let out = env.run(&["run", "--argv0", "wasm-ld", module, "--", "-o", "x"]);
    assert_eq!(ok(&out), "wasm-ld");
}
