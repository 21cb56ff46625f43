//! `cold_start = "baseline"`: the first run of a module runs Winch code, compiled in a fraction
//! of Cranelift's time, and waits at exit for the optimized artifact, which every later run
//! loads. Modules and components alike; bad settings are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Env, ok, stderr};

/// Runs `file` with baseline code first and `-v`: what the command said on stderr.
fn run_baseline(env: &Env, file: &std::path::Path) -> String {
    let out = env.run(&[
        "-v",
        "--cold-start",
        "baseline",
        "run",
        file.to_str().unwrap(),
    ]);
    ok(&out);
    stderr(&out)
}

#[test]
fn a_cold_run_runs_baseline_code_and_the_next_run_the_optimized_artifact() {
    let env = Env::new();
    let hello = common::hello();
    let first = run_baseline(&env, &hello);
    assert!(first.contains("compiled baseline code (Winch"), "{first}");
    assert!(first.contains("optimized code stored"), "{first}");
    // The miss of baseline code is not "explained" by the baseline entry it just stored.
    assert!(!first.contains("miss:"), "{first}");
    let next = run_baseline(&env, &hello);
    assert!(next.contains("loaded from disk tier"), "{next}");
    assert!(!next.contains("baseline"), "{next}");

    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap();
    assert_eq!(stats["computes"], 2, "{stats:#}");
    assert_eq!(stats["baseline"]["served"], 1, "{stats:#}");
    assert_eq!(stats["baseline"]["upgrades"], 1, "{stats:#}");
    let table = ok(&env.run(&["stats"]));
    assert!(
        table.contains("baseline code: 1 requests, 1 upgrades"),
        "{table}"
    );
    let text = ok(&env.run(&["stats", "--format", "prometheus"]));
    for line in [
        "warmcache_baseline_served_total{cache=\"wasmtime\"} 1",
        "warmcache_baseline_upgrades_total{cache=\"wasmtime\"} 1",
        "warmcache_baseline_upgrade_failures_total{cache=\"wasmtime\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in {text}");
    }
}

#[test]
fn a_component_runs_baseline_code_too() {
    let env = Env::new();
    let component = env.write("run.wat", common::component(false));
    let first = run_baseline(&env, &component);
    assert!(first.contains("compiled baseline code"), "{first}");
    let next = run_baseline(&env, &component);
    assert!(next.contains("loaded from disk tier"), "{next}");
}

#[test]
fn a_module_winch_cannot_compile_runs_optimized_code_at_once() {
    let env = Env::new();
    // A tail call: a proposal Winch does not implement.
    let module = env.write(
        "tail.wat",
        r#"(module
  (memory (export "memory") 1)
  (func $done)
  (func (export "_start") return_call $done))"#,
    );
    let first = run_baseline(&env, &module);
    assert!(first.contains(" compiled in "), "{first}");
    assert!(!first.contains("baseline"), "{first}");
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap();
    assert_eq!(stats["baseline"]["unsupported"], 1, "{stats:#}");
    assert_eq!(stats["baseline"]["served"], 0, "{stats:#}");
}

#[test]
fn bad_cold_start_settings_are_refused() {
    let env = Env::new();
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    let out = env.run(&["--cold-start", "fast", "run", hello]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown cold start \"fast\""),
        "{}",
        stderr(&out)
    );
    let out = env.run(&[
        "--cold-start",
        "baseline",
        "--cpu-level",
        "auto",
        "run",
        hello,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot be combined with cpu_level"),
        "{}",
        stderr(&out)
    );
    // A setting Winch cannot honour: named by wasmtime, refused before anything runs.
    let out = env.run(&[
        "--cold-start",
        "baseline",
        "--debug-info",
        "true",
        "run",
        hello,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Winch does not currently support"),
        "{}",
        stderr(&out)
    );
}

/// The Winch compile runs in the compile worker, under its limits: a limit no compile can meet
/// stops it (before, Winch compiled in this process and the module ran regardless).
#[test]
fn the_baseline_compile_runs_in_the_worker_under_its_limits() {
    let env = Env::new();
    let hello = common::hello();
    let out = env.run(&[
        "--cold-start",
        "baseline",
        "--compile-timeout-ms",
        "1",
        "run",
        hello.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("it went over its wall-time limit of 1ms"),
        "{message}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap();
    assert_eq!(stats["baseline"]["served"], 0, "{stats:#}");
    // Within the limits the worker compiles both, Winch's code first.
    let first = run_baseline(&env, &hello);
    assert!(first.contains("compiled baseline code (Winch"), "{first}");
}
