//! The `warmcache` binary end to end: run, precompile, stats, ls, verify, gc, clear, config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::Stdio;

use common::{Env, ok, stderr, stdout};

#[test]
fn run_twice_compiles_then_loads_from_the_file_tier() {
    let env = Env::new();
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    let first = env.run(&["run", "-v", hello]);
    assert_eq!(ok(&first), "Hello from warmcache!\n");
    assert!(stderr(&first).contains("compiled in"), "{}", stderr(&first));

    let second = env.run(&["run", "-v", hello]);
    assert_eq!(ok(&second), "Hello from warmcache!\n");
    let how = stderr(&second);
    assert!(how.contains("loaded from disk tier fs:"), "{how}");
    assert!(how.contains("(mmap)"), "{how}");
    assert!(env.cache_dir().join("files").is_dir());

    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap();
    assert_eq!(stats["computes"], 1);
    assert_eq!(stats["tier_hits"], 1);
    let fs = &stats["tiers"][1];
    assert_eq!(
        (fs["kind"].as_str(), fs["entries"].as_u64()),
        (Some("fs"), Some(1))
    );
    assert_eq!(fs["hits"], 1);

    // The same totals in Prometheus's text format, under the library's metric names.
    let text = ok(&env.run(&["stats", "--format", "prometheus"]));
    assert!(
        text.contains("# TYPE warmcache_cache_computes_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("warmcache_cache_computes_total{cache=\"wasmtime\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("warmcache_cache_tier_hits_total{cache=\"wasmtime\"} 1\n"),
        "{text}"
    );
    let fs_hits = text
        .lines()
        .find(|l| l.starts_with("warmcache_tier_hits_total{tier=\"fs:"))
        .unwrap_or_else(|| panic!("no fs hits in {text}"));
    assert!(fs_hits.ends_with("kind=\"fs\"} 1"), "{fs_hits}");
    assert!(text.contains("warmcache_tier_entries{"), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
        assert!(
            series.starts_with("warmcache_") && series.ends_with('}'),
            "{line}"
        );
    }
}

/// A warm run of an unchanged wasm file neither reads nor hashes it (its hash is remembered in
/// `inputs/`); after the file changes, the next run hashes it again and runs the new code.
#[test]
fn a_warm_run_of_an_unchanged_file_does_not_read_it() {
    let env = Env::new();
    let wat = |n: i32| {
        format!(
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                 (memory (export "memory") 1)
                 (func (export "_start") (call $exit (i32.const {n}))))"#
        )
    };
    let path = env.write("exit.wat", wat(3));
    let path = path.to_str().unwrap();
    // Older than the racy window when it is first remembered.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = env.run(&["run", "-v", path]);
    assert_eq!(first.status.code(), Some(3), "{}", stderr(&first));
    assert!(!stderr(&first).contains("remembered"), "{}", stderr(&first));
    let second = env.run(&["run", "-v", path]);
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("input hash remembered: the file was not read"),
        "{}",
        stderr(&second)
    );
    assert!(env.cache_dir().join("inputs").is_dir());
    // A wider racy window (files that change through mappings, or remote clocks): a file only
    // a second old is then hashed again, not trusted to its record.
    let wide = env
        .command()
        .env("WARMCACHE_INPUT_RACY_WINDOW_MS", "3600000")
        .args(["run", "-v", path])
        .output()
        .unwrap();
    assert_eq!(wide.status.code(), Some(3), "{}", stderr(&wide));
    assert!(!stderr(&wide).contains("remembered"), "{}", stderr(&wide));

    env.write("exit.wat", wat(4));
    let changed = env.run(&["run", "-v", path]);
    assert_eq!(changed.status.code(), Some(4), "{}", stderr(&changed));
    assert!(
        stderr(&changed).contains("compiled in"),
        "{}",
        stderr(&changed)
    );
    assert!(
        !stderr(&changed).contains("remembered"),
        "{}",
        stderr(&changed)
    );
}

/// With `verify_every_load = false`, an entry file that verified once is loaded without hashing
/// while it is unchanged; `warmcache verify` still checks it in full.
#[test]
fn verified_files_are_not_hashed_again_until_they_change() {
    let env = Env::new();
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    let run = || {
        let out = env
            .command()
            .env("WARMCACHE_VERIFY_EVERY_LOAD", "false")
            .args(["run", "-v", hello])
            .output()
            .unwrap();
        assert_eq!(ok(&out), "Hello from warmcache!\n");
        stderr(&out)
    };
    assert!(run().contains("compiled in"));
    // Entry files written within a second are checked in full and not recorded yet.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let full = run();
    assert!(
        full.contains("(mmap)") && !full.contains("not hashed"),
        "{full}"
    );
    let trusted = run();
    assert!(trusted.contains("not hashed"), "{trusted}");
    // The default verifies every load.
    let default = env.run(&["run", "-v", hello]);
    assert!(
        !stderr(&default).contains("not hashed"),
        "{}",
        stderr(&default)
    );
    assert!(
        ok(&env.run(&["config"])).contains("verify_every_load"),
        "config does not show the key"
    );

    // Damage through the filesystem: checked in full again, found, recompiled.
    let entry = entry_files(&env).remove(0);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&entry, &bytes).unwrap();
    assert!(run().contains("compiled in"));
}

#[test]
fn guest_exit_codes_arguments_environment_and_directories() {
    let env = Env::new();
    let exits = env.write("exits.wat", common::exits_with(7));
    let out = env.run(&["run", exits.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    let args = env.write("args.wat", common::COUNTS_ARGS);
    let out = env.run(&["run", args.to_str().unwrap(), "--", "a", "b"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    let envs = env.write("env.wat", common::COUNTS_ENV);
    let out = env.run(&[
        "run",
        "--env",
        "A=1",
        "--env",
        "B=2",
        envs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let preopen = env.write("preopen.wat", common::CHECKS_PREOPEN);
    let dir = env.path().display().to_string();
    let out = env.run(&[
        "run",
        "--dir",
        &format!("{dir}::/data"),
        preopen.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = env.run(&["run", preopen.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(8),
        "EBADF without --dir: {}",
        stderr(&out)
    );
}

#[test]
fn runs_preview2_command_components() {
    let env = Env::new();
    let good = env.write("good.wat", common::component(false));
    let bad = env.write("bad.wat", common::component(true));
    ok(&env.run(&["run", good.to_str().unwrap()]));
    let again = env.run(&["run", "-v", good.to_str().unwrap()]);
    ok(&again);
    assert!(
        stderr(&again).contains("loaded from disk tier"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        env.run(&["run", bad.to_str().unwrap()]).status.code(),
        Some(1)
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let env = Env::new();
    let out = env.run(&["run", "/no/such/file.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("reading /no/such/file.wasm"),
        "{}",
        stderr(&out)
    );

    let junk = env.write("junk.wasm", "this is not wasm");
    let out = env.run(&["run", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("compiling module"),
        "{}",
        stderr(&out)
    );

    // Imports are resolved once, when the pre-instantiation is built: a missing one is named
    // with the linker that lacks it, before anything runs.
    let foreign = env.write(
        "foreign.wat",
        r#"(module (import "env" "missing" (func)) (func (export "_start")))"#,
    );
    let out = env.run(&["run", foreign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("with linker wasi-p1 v1 failed")
            && stderr(&out).contains("env::missing"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["--tiers", "memory,floppy", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown tier kind \"floppy\""),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["gc", "--max-size", "12XB"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("malformed size"), "{}", stderr(&out));
}

#[test]
fn precompile_a_directory_with_an_invalid_file_and_a_dangling_link() {
    let env = Env::new();
    let dir = env.path().join("modules");
    for (name, text) in [
        ("a.wasm", common::module(1, 5)),
        ("nested/b.wasm", common::module(2, 5)),
        ("c.wasm", "not wasm".to_owned()),
        ("notes.txt", "ignored".to_owned()),
    ] {
        env.write(&format!("modules/{name}"), text);
    }
    std::os::unix::fs::symlink(dir.join("missing"), dir.join("dangling.wasm")).unwrap();

    let out = env.run(&["precompile", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("3 files: 2 compiled, 0 already cached, 1 failed"),
        "{summary}"
    );
    let failures = format!("{summary}{}", stderr(&out));
    assert!(failures.contains("c.wasm"), "{failures}");
    // Links below a directory given are not followed: the dangling one is not a file to compile.
    assert!(!failures.contains("dangling.wasm"), "{failures}");
    // Named explicitly, it is followed, and fails.
    let out = env.run(&["precompile", dir.join("dangling.wasm").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("dangling.wasm"), "{}", stderr(&out));

    let again = env.run(&["precompile", dir.join("a.wasm").to_str().unwrap()]);
    assert!(stdout(&again).contains("1 files: 0 compiled, 1 already cached, 0 failed"));

    let listing: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["ls", "--json"]))).unwrap();
    let entries = listing.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert_eq!(entry["kind"], "module");
        assert!(
            entry["producer"]
                .as_str()
                .unwrap()
                .starts_with("wasmtime 48")
        );
        assert!(entry["created"].as_str().unwrap().starts_with("20"));
        assert!(entry["last_used"].as_str().is_some());
    }
}

fn entry_files(env: &Env) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for fan in std::fs::read_dir(env.cache_dir().join("files/entries")).unwrap() {
        for entry in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files
}

#[test]
fn verify_finds_and_removes_a_corrupted_entry() {
    let env = Env::new();
    let hello = common::hello();
    ok(&env.run(&["run", hello.to_str().unwrap()]));
    let m = env.write("m.wat", common::module(3, 3));
    ok(&env.run(&["precompile", m.to_str().unwrap()]));
    ok(&env.run(&["verify"]));

    let victim = entry_files(&env).remove(0);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    let key = victim.file_name().unwrap().to_str().unwrap().to_owned();

    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    assert!(
        report.contains("bad: fs:") && report.contains(&key),
        "{report}"
    );
    assert!(
        report.contains("checked 2 entries in 1 tiers: 1 bad"),
        "{report}"
    );

    let out = env.run(&["verify", "--remove"]);
    assert!(stdout(&out).contains("1 removed"), "{}", stdout(&out));
    ok(&env.run(&["verify"]));
    assert_eq!(entry_files(&env).len(), 1);
}

#[test]
fn gc_brings_usage_under_the_limit() {
    let env = Env::new();
    let dir = env.path().join("many");
    for seed in 0..6 {
        env.write(&format!("many/m{seed}.wasm"), common::module(seed, 40));
    }
    ok(&env.run(&["precompile", dir.to_str().unwrap()]));
    let bytes = |env: &Env| {
        let stats: serde_json::Value =
            serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap();
        stats["tiers"][1]["bytes"].as_u64().unwrap()
    };
    let before = bytes(&env);
    let limit = before / 2;
    let out = ok(&env.run(&["gc", "--max-size", &limit.to_string()]));
    assert!(out.contains("evicted"), "{out}");
    let after = bytes(&env);
    assert!(
        after <= limit && after > 0,
        "{after} > {limit} (was {before})"
    );
}

#[test]
fn clear_asks_unless_told_yes() {
    let env = Env::new();
    ok(&env.run(&["run", common::hello().to_str().unwrap()]));
    let out = env
        .command()
        .arg("clear")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    assert_eq!(entry_files(&env).len(), 1);

    ok(&env.run(&["clear", "--yes"]));
    assert_eq!(entry_files(&env).len(), 0);
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap();
    assert_eq!(stats["computes"], 0);
}

#[test]
fn config_precedence_file_then_environment_then_flags() {
    let env = Env::new();
    let custom = env.path().join("elsewhere");
    env.write(
        "config/warmcache/config.toml",
        format!(
            "cache_dir = \"{}\"\n\n[engine]\nopt_level = \"none\"\nfuel = true\n\n[[tiers]]\nkind = \"memory\"\nsize = \"64MiB\"\n\n[[tiers]]\nkind = \"redb\"\n",
            custom.display()
        ),
    );
    let shown = ok(&env.run(&["config"]));
    let file = env.config_file().display().to_string();
    assert!(shown.contains(&format!("# config file: {file}")), "{shown}");
    let line_of = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {shown}"))
            .to_owned()
    };
    assert!(line_of("engine.opt_level").contains("none"));
    assert!(
        line_of("engine.opt_level").ends_with(&format!("{file}:4")),
        "{shown}"
    );
    assert!(line_of("engine.fuel").contains("true"));
    assert!(line_of("cache_dir").contains("elsewhere"));
    assert!(line_of("engine.simd").ends_with("# default"));
    assert!(
        shown.contains(&format!(
            "tiers[1]             = redb path={}",
            custom.join("cache.redb").display()
        )),
        "{shown}"
    );

    let shown = ok(&env
        .command()
        .env("WARMCACHE_OPT_LEVEL", "speed_and_size")
        .env("WARMCACHE_FUEL", "false")
        .arg("config")
        .output()
        .unwrap());
    assert!(line_of_in(&shown, "engine.opt_level").contains("speed_and_size"));
    assert!(line_of_in(&shown, "engine.opt_level").ends_with("# environment WARMCACHE_OPT_LEVEL"));
    assert!(line_of_in(&shown, "engine.fuel").contains("false"));

    let shown = ok(&env
        .command()
        .env("WARMCACHE_OPT_LEVEL", "speed_and_size")
        .args(["--opt-level", "speed", "config"])
        .output()
        .unwrap());
    assert!(line_of_in(&shown, "engine.opt_level").contains("speed "));
    assert!(line_of_in(&shown, "engine.opt_level").ends_with("# flag --opt-level"));

    // The settings reach the engine: runs under the file's settings use the redb tier and
    // compile under their own key.
    ok(&env.run(&["run", common::hello().to_str().unwrap()]));
    assert!(custom.join("cache.redb").exists());
}

fn line_of_in(shown: &str, key: &str) -> String {
    shown
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {shown}"))
        .to_owned()
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let env = Env::new();
    let path = env.write(
        "bad-size.toml",
        "[[tiers]]\nkind = \"fs\"\nsize = \"12XB\"\n",
    );
    let out = env.run(&["--config", path.to_str().unwrap(), "stats"]);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains(&format!("{}:3: key `size`", path.display())),
        "{message}"
    );
    assert!(message.contains("malformed size"), "{message}");

    let path = env.write("bad-kind.toml", "[[tiers]]\nkind = \"floppy\"\n");
    let out = env.run(&["--config", path.to_str().unwrap(), "stats"]);
    let message = stderr(&out);
    assert!(
        message.contains(&format!("{}:2: key `kind`", path.display())),
        "{message}"
    );
    assert!(message.contains("floppy"), "{message}");

    let out = env.run(&["--config", "/no/such/config.toml", "stats"]);
    assert!(stderr(&out).contains("reading config file /no/such/config.toml"));

    let out = env
        .command()
        .env("WARMCACHE_FUEL", "maybe")
        .arg("config")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("environment WARMCACHE_FUEL: expected true or false"));
}

#[test]
fn a_locked_redb_tier_is_skipped_with_a_warning_naming_the_holder() {
    let env = Env::new();
    let path = env.path().join("locked.redb");
    let _held = warmcache_redb::RedbBackend::builder(&path).open().unwrap();
    let tiers = format!("memory,redb={}", path.display());
    let out = env.run(&["--tiers", &tiers, "run", common::hello().to_str().unwrap()]);
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    let warning = stderr(&out);
    assert!(warning.contains("skipping tier redb:"), "{warning}");
    assert!(warning.contains(&path.display().to_string()), "{warning}");
    assert!(
        warning.contains(&format!("process {}", std::process::id())),
        "{warning}"
    );
}

#[test]
fn two_processes_share_one_cache_directory() {
    let env = Env::new();
    let dir = env.path().join("shared");
    for seed in 0..4 {
        env.write(
            &format!("shared/m{seed}.wasm"),
            common::module(seed + 10, 30),
        );
    }
    let spawn = |what: &[&str]| {
        env.command()
            .args(what)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let hello = common::hello();
    let children = [
        spawn(&["precompile", dir.to_str().unwrap()]),
        spawn(&["precompile", dir.to_str().unwrap()]),
        spawn(&["run", hello.to_str().unwrap()]),
        spawn(&["run", hello.to_str().unwrap()]),
    ];
    for child in children {
        ok(&child.wait_with_output().unwrap());
    }
    ok(&env.run(&["verify"]));
    let listing: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["ls", "--json"]))).unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 5);
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap();
    // Every process recorded its counters.
    assert!(stats["computes"].as_u64().unwrap() >= 5);
}

#[cfg(feature = "rocksdb")]
#[test]
fn a_rocksdb_tier_when_built_in() {
    let env = Env::new();
    let hello = common::hello();
    let run = || {
        env.run(&[
            "--tiers",
            "memory,rocksdb",
            "run",
            "-v",
            hello.to_str().unwrap(),
        ])
    };
    ok(&run());
    let second = run();
    assert!(
        stderr(&second).contains("loaded from disk tier rocksdb:"),
        "{}",
        stderr(&second)
    );
    ok(&env.run(&["--tiers", "rocksdb", "verify"]));
    let out = ok(&env.run(&["--tiers", "rocksdb", "gc", "--max-size", "0"]));
    assert!(out.contains("evicted 1 entries"), "{out}");
}

#[cfg(not(feature = "rocksdb"))]
#[test]
fn a_rocksdb_tier_without_the_feature_is_skipped_with_a_warning() {
    let env = Env::new();
    let out = env.run(&[
        "--tiers",
        "memory,rocksdb",
        "run",
        common::hello().to_str().unwrap(),
    ]);
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    assert!(
        stderr(&out).contains("--features rocksdb"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_reports_a_table_json_and_a_chart() {
    let env = Env::new();
    let chart = env.path().join("chart.svg");
    let out = env.run(&[
        "--tiers",
        "memory,fs,redb",
        "bench",
        "--runs",
        "2",
        "--json",
        "--chart",
        chart.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let module = &report["modules"][0];
    assert_eq!(module["name"], "built-in");
    let names: Vec<&str> = module["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "compile",
            "memory (hash supplied)",
            "memory (hashing wasm)",
            "fs (mmap)",
            "fs (bytes)",
            "redb",
            "wasmtime's cache"
        ]
    );
    let instantiation: Vec<&str> = module["instantiation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        instantiation,
        [
            "instance cache (pooling, file tier)",
            "Linker::instantiate (default allocator)"
        ]
    );
    for m in module["instantiation"].as_array().unwrap() {
        assert!(m["median_ms"].as_f64().unwrap() > 0.0, "{m}");
        assert_eq!(m["samples_ms"].as_array().unwrap().len(), 2, "{m}");
    }
    for m in module["measurements"].as_array().unwrap() {
        assert!(m["median_ms"].as_f64().unwrap() > 0.0, "{m}");
        if m["kind"] == "tier" {
            assert_eq!(m["samples_ms"].as_array().unwrap().len(), 2);
            assert!(m["first_call_median_ms"].as_f64().unwrap() >= m["min_ms"].as_f64().unwrap());
        }
    }
    assert!(
        report["recommendation"]["tiers"]
            .as_str()
            .unwrap()
            .starts_with("memory,")
    );
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("fs (mmap)"),
        "{svg:.200}"
    );
    // Nothing is left behind in the cache directory but the directory itself.
    let left: Vec<_> = std::fs::read_dir(env.cache_dir())
        .unwrap()
        .flatten()
        .collect();
    assert!(
        left.iter()
            .all(|e| !e.file_name().to_string_lossy().starts_with("bench-"))
    );

    let table = ok(&env.run(&["bench", "--runs", "1"]));
    // Which tier wins depends on the machine; that there is a recommendation does not.
    assert!(table.contains("recommended tiers: memory,"), "{table}");
    let out = env.run(&["bench", "/no/such.wasm"]);
    assert!(
        stderr(&out).contains("reading /no/such.wasm"),
        "{}",
        stderr(&out)
    );
}

/// Runs `warmcache ARGS` and fails the test if it has not finished within two minutes (a hang
/// would otherwise stall the whole suite).
fn run_bounded(env: &Env, args: &[&str]) -> std::process::Output {
    let mut child = env
        .command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("warmcache {args:?} hung\nstderr:\n{}", stderr(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn precompile_walks_regular_files_only_and_never_follows_links_below_its_roots() {
    let env = Env::new();
    let dir = env.path().join("modules");
    env.write("modules/a.wasm", common::module(1, 5));
    env.write("modules/elsewhere/b.wasm", common::module(2, 5));
    // Loops: each level links back up, so a walk that follows links visits 2^depth paths.
    for sub in ["x", "x/y", "x/y/z"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::os::unix::fs::symlink("..", dir.join(sub).join("up")).unwrap();
        std::os::unix::fs::symlink(".", dir.join(sub).join("here")).unwrap();
    }
    std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("x/linked")).unwrap();
    std::os::unix::fs::symlink(dir.join("a.wasm"), dir.join("x/link.wasm")).unwrap();
    // A FIFO named like a module: opening it for reading would wait for a writer forever.
    let fifo = dir.join("pipe.wasm");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());

    let out = run_bounded(&env, &["precompile", dir.to_str().unwrap()]);
    let summary = ok(&out);
    assert!(
        summary.contains("2 files: 2 compiled, 0 already cached, 0 failed"),
        "{summary}{}",
        stderr(&out)
    );

    // Named explicitly, a FIFO is refused, not waited on; an explicit link is followed.
    let out = run_bounded(&env, &["precompile", fifo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    let link = dir.join("x/link.wasm");
    let out = run_bounded(&env, &["precompile", link.to_str().unwrap()]);
    assert!(ok(&out).contains("1 files: 0 compiled, 1 already cached"));
}

#[test]
fn ls_and_verify_leave_recency_alone() {
    let env = Env::new();
    let a = env.write("a.wat", common::module(11, 3));
    let b = env.write("b.wat", common::module(12, 3));
    ok(&env.run(&["precompile", a.to_str().unwrap(), b.to_str().unwrap()]));
    // Long unused: a day and two days ago.
    let files = entry_files(&env);
    assert_eq!(files.len(), 2);
    let day = std::time::Duration::from_secs(86_400);
    for (n, file) in files.iter().enumerate() {
        let then = std::time::SystemTime::now() - day * (n as u32 + 1);
        std::fs::File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_modified(then)
            .unwrap();
    }
    let before: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();
    ok(&env.run(&["ls"]));
    ok(&env.run(&["verify"]));
    let after: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "looking at entries counted as using them");
}

/// With `sealed_loads = true`, a warm run loads the entry from a sealed copy and runs it.
#[test]
fn sealed_loads_run_from_a_sealed_copy() {
    let env = Env::new();
    let hello = common::hello();
    ok(&env.run(&["run", hello.to_str().unwrap()]));
    let out = env
        .command()
        .env("WARMCACHE_SEALED_LOADS", "true")
        .args(["run", "-v", hello.to_str().unwrap()])
        .output()
        .unwrap();
    let how = stderr(&out);
    assert!(out.status.success(), "{how}");
    assert!(stdout(&out).contains("Hello"), "{}", stdout(&out));
    assert!(!how.contains("compiled in"), "{how}");
    let config = ok(&env
        .command()
        .env("WARMCACHE_SEALED_LOADS", "true")
        .arg("config")
        .output()
        .unwrap());
    assert!(config.contains("sealed_loads"), "{config}");
}

/// What `audit` relies on: wasmtime compiles the same input with the same settings to the same
/// bytes, in another process, with parallel compilation (many functions, several threads).
#[test]
fn another_process_compiles_the_same_artifact_and_audit_says_so() {
    let env = Env::new();
    let module = env.write("many.wat", common::module(7, 3000));
    let module = module.to_str().unwrap();
    ok(&env.run(&["--tiers", "fs", "precompile", module]));
    let report = ok(&env.run(&["--tiers", "fs", "audit", module]));
    assert!(
        report.contains("audited 1 of 1 entries found for 1 files in 1 tier(s): 0 bad"),
        "{report}"
    );
    // Bad arguments are refused clearly.
    let out = env.run(&["--tiers", "fs", "audit", "--sample", "0", module]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = env.run(&["--tiers", "fs", "audit"]);
    assert!(
        stderr(&out).contains("nothing to audit"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["--tiers", "fs", "audit", "--tier", "s3", module]);
    assert!(stderr(&out).contains("no tier named"), "{}", stderr(&out));
}

#[test]
fn a_failed_compile_is_remembered_across_processes_until_cleared() {
    let env = Env::new();
    // A module header, then a section id no wasm has: it fails to compile.
    let bad = env.write("bad.wasm", b"\0asm\x01\0\0\0\x7f\x01\x00");
    let bad = bad.to_str().unwrap();
    let stats = || -> serde_json::Value {
        serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap()
    };

    let first = env.run(&["run", bad]);
    assert_eq!(first.status.code(), Some(1));
    let compiled = stderr(&first);
    assert!(compiled.contains("failed"), "{compiled}");
    assert!(!compiled.contains("remembered"), "{compiled}");

    // The next process gets the same error without compiling.
    let second = env.run(&["run", bad]);
    assert_eq!(second.status.code(), Some(1));
    let remembered = stderr(&second);
    assert!(remembered.contains("remembered: it failed"), "{remembered}");
    assert!(remembered.contains(bad_reason(&compiled)), "{remembered}");
    let totals = stats();
    assert_eq!(totals["computes"], 1);
    assert_eq!(totals["compute_errors"], 1);
    assert_eq!(totals["remembered_failures"], 1);
    let listed: serde_json::Value = serde_json::from_str(&ok(&env.run(&["ls", "--json"]))).unwrap();
    assert!(
        listed.to_string().contains("\"failure\""),
        "the failure entry is not listed: {listed}"
    );

    // `clear` forgets it (and resets the counters); a process set not to remember compiles
    // whatever is remembered.
    ok(&env.run(&["clear", "--yes"]));
    assert!(!stderr(&env.run(&["run", bad])).contains("remembered"));
    assert_eq!(stats()["computes"], 1);
    for _ in 0..2 {
        let out = env.run(&["--remember-failures-ms", "0", "run", bad]);
        assert!(!stderr(&out).contains("remembered"), "{}", stderr(&out));
    }
    assert_eq!(stats()["computes"], 3);
    assert!(stderr(&env.run(&["run", bad])).contains("remembered: it failed"));
    let totals = stats();
    assert_eq!(totals["computes"], 3);
    assert_eq!(totals["remembered_failures"], 1);
}

/// The compile error's own words, after its first line's `failed: `.
fn bad_reason(message: &str) -> &str {
    let line = message.lines().next().unwrap_or_default();
    line.rsplit_once("failed: ")
        .map_or(line, |(_, why)| why)
        .trim()
}

/// A module whose compile takes far longer than a moment: many functions of long arithmetic.
fn compile_bomb() -> String {
    let mut wat = String::from("(module\n");
    for f in 0..1500 {
        wat.push_str(&format!(
            "(func (export \"f{f}\") (param i32) (result i32) local.get 0\n"
        ));
        for i in 0..200 {
            wat.push_str(&format!("i32.const {i} i32.add i32.const 7 i32.mul\n"));
        }
        wat.push_str(")\n");
    }
    wat.push(')');
    wat
}

#[test]
fn compiles_run_in_a_worker_whose_limits_stop_a_compile_bomb() {
    let env = Env::new();
    let bomb = env.write("bomb.wat", compile_bomb());
    let bomb = bomb.to_str().unwrap();

    // Over the wall-time limit: the worker is killed, this process reports it and exits.
    let out = env.run(&["--compile-timeout-ms", "300", "run", bomb]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("was stopped: it went over its wall-time limit of 300ms"),
        "{message}"
    );
    // Remembered under these limits only: a longer limit compiles it.
    let again = stderr(&env.run(&["--compile-timeout-ms", "300", "run", bomb]));
    assert!(again.contains("remembered: it failed"), "{again}");
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["stats", "--json"]))).unwrap();
    assert_eq!(stats["computes"], 1);
    assert_eq!(stats["remembered_failures"], 1);

    // Over the memory limit.
    let out = env.run(&["--compile-memory", "48MiB", "run", bomb]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("its memory limit of 48 MiB"), "{message}");

    // Within the limits, the worker's artifact is what runs, and it is stored.
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    assert_eq!(ok(&env.run(&["run", hello])), "Hello from warmcache!\n");
    let how = stderr(&env.run(&["run", "-v", hello]));
    assert!(how.contains("loaded from disk tier fs:"), "{how}");
}
