//! `warmcache explain` and the miss line of `run -v`: a miss names the setting in which the
//! cached configurations of the module differ from this one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Env, ok, stderr};
use warmcache_wasmtime::CompileTarget;

fn explain(env: &Env, flags: &[&str], module: &str) -> String {
    let out = env
        .command()
        .args(flags)
        .args(["explain", module])
        .output()
        .unwrap();
    ok(&out)
}

#[test]
fn explain_names_exactly_the_setting_that_differs() {
    let env = Env::new();
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    ok(&env.run(&["run", hello]));

    let same = explain(&env, &[], hello);
    assert!(same.contains("this configuration's entry"), "{same}");
    assert!(same.contains("opt_level"), "{same}");

    let why = explain(&env, &["--opt-level", "none"], hello);
    assert!(
        why.contains(": opt_level: none here, speed in the entry\n"),
        "{why}"
    );
    let why = explain(&env, &["--simd", "false"], hello);
    assert!(
        why.contains(": simd: false here, true in the entry\n"),
        "{why}"
    );
    let triple = CompileTarget::host_triple();
    let why = explain(&env, &["--target", &triple], hello);
    assert!(
        why.contains(": cpu: baseline here, native in the entry\n"),
        "{why}"
    );
    let why = explain(&env, &["--cpu-level", "x86-64-v1"], hello);
    if cfg!(target_arch = "x86_64") {
        assert!(
            why.contains(": cpu: x86-64-v1 here, native in the entry\n"),
            "{why}"
        );
    }

    // `run -v` says it in one line when it compiles.
    let out = env
        .command()
        .args(["--opt-level", "none", "-v", "run", hello])
        .output()
        .unwrap();
    ok(&out);
    assert!(
        stderr(&out)
            .contains("warmcache: miss: 1 other configuration of this module is cached; in the")
            && stderr(&out).contains("opt_level: none here, speed in the entry"),
        "{}",
        stderr(&out)
    );
    // Now two configurations are cached; a third hears of both.
    let out = env
        .command()
        .args(["--opt-level", "speed_and_size", "-v", "run", hello])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("2 other configurations of this module are cached"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_module_never_cached_says_so() {
    let env = Env::new();
    let module = env.write("never.wat", common::exits_with(0));
    let why = explain(&env, &[], module.to_str().unwrap());
    assert!(why.starts_with("key "), "{why}");
    assert!(
        why.contains("not cached in any tier under any configuration"),
        "{why}"
    );
    let out = env.run(&["-v", "run", module.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("warmcache: miss: no other configuration of this module is cached"),
        "{}",
        stderr(&out)
    );
}
