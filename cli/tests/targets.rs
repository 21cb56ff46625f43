//! `--target`, `--cranelift-set` and their config keys: a tier filled for a fleet's target is
//! hit by nodes configured the same way, and only by them; and `run --argv0`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Env, ok, stderr, stdout};
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
    assert!(
        stderr(&out).contains("code compiled for it cannot run here; use `warmcache precompile`"),
        "{}",
        stderr(&out)
    );
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

const FLEET_SECRET: &str = "a mixed fleet's secret of at least 32 bytes";

/// A host of a mixed fleet: a cache directory of its own, the shared bucket behind it, and
/// `engine` settings (such as its `cpu_level`).
struct Host {
    env: Env,
    config: std::path::PathBuf,
}

impl Host {
    fn new(endpoint: &str, bucket: &str, engine: &str) -> Self {
        let env = Env::new();
        let config = env.write(
            "host.toml",
            format!(
                "secret_env = \"FLEET_SECRET\"\n[engine]\n{engine}\n\n[[tiers]]\nkind = \"fs\"\n\n\
                 [[tiers]]\nkind = \"s3\"\nurl = \"s3://{bucket}/modules\"\nendpoint = \"{endpoint}\"\n\
                 region = \"us-east-1\"\nallow_http = true\n"
            ),
        );
        Self { env, config }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.env
            .command()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
            .env("FLEET_SECRET", FLEET_SECRET)
            .args(["--config", self.config.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    }

    /// The requests each CPU level answered, from `stats --json`.
    fn levels(&self) -> serde_json::Value {
        let out = self.run(&["stats", "--json"]);
        let stats: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
        stats["cpu_levels"].clone()
    }

    /// Runs hello with `-v`: what it said about where the module came from.
    fn hello(&self) -> String {
        let out = self.run(&["-v", "run", common::hello().to_str().unwrap()]);
        assert_eq!(ok(&out), "Hello from warmcache!\n");
        stderr(&out)
    }
}

#[test]
fn a_mixed_fleet_loads_the_best_precompiled_level_each_cpu_runs() {
    use warmcache_wasmtime::CpuLevel;
    let supported: Vec<&str> = CpuLevel::supported_here()
        .into_iter()
        .map(CpuLevel::name)
        .collect();
    if !supported.contains(&"x86-64-v4") {
        eprintln!("skipped: this host does not run x86-64-v4 ({supported:?})");
        return;
    }
    let moto = crate::s3::shared();
    let bucket = crate::s3::unique_bucket("levels");
    crate::s3::create_bucket(moto.port(), &bucket);
    let endpoint = moto.endpoint();
    let hello = common::hello();

    // CI fills the bucket with three levels.
    let ci = Host::new(&endpoint, &bucket, "");
    let out = ci.run(&[
        "precompile",
        "--cpu-levels",
        "x86-64-v2,x86-64-v3,x86-64-v4",
        hello.to_str().unwrap(),
    ]);
    assert!(
        ok(&out).contains("1 files x 3 CPU levels: 3 compiled"),
        "{}",
        stdout(&out)
    );

    // Each host loads the best level at or below what its CPU claims, compiling nothing;
    // `auto` claims what this CPU runs.
    for (claim, loads) in [
        ("x86-64-v2", "x86-64-v2"),
        ("x86-64-v3", "x86-64-v3"),
        ("x86-64-v4", "x86-64-v4"),
        ("auto", "x86-64-v4"),
    ] {
        let host = Host::new(&endpoint, &bucket, &format!("cpu_level = \"{claim}\""));
        let how = host.hello();
        assert!(
            how.contains(&format!("loaded {loads} from remote tier")),
            "{claim}: {how}"
        );
        assert!(!how.contains("compiled"), "{claim}: {how}");
        assert_eq!(host.levels(), serde_json::json!({ loads: 1 }), "{claim}");
    }
    // A host claiming v1 finds nothing it can run: it compiles for v1 and shares that.
    let v1 = "cpu_level = \"x86-64-v1\"";
    let host = Host::new(&endpoint, &bucket, v1);
    let how = host.hello();
    assert!(how.contains("compiled for x86-64-v1"), "{how}");
    assert_eq!(host.levels(), serde_json::json!({ "x86-64-v1": 1 }));
    let how = Host::new(&endpoint, &bucket, v1).hello();
    assert!(how.contains("loaded x86-64-v1 from remote tier"), "{how}");
    // A host without levels keys by its own CPU's features: nothing in the bucket is its.
    let how = Host::new(&endpoint, &bucket, "").hello();
    assert!(how.contains("compiled"), "{how}");
    // That native entry is what a host with `native_first` loads before any level.
    let host = Host::new(
        &endpoint,
        &bucket,
        "cpu_level = \"auto\"\nnative_first = true",
    );
    let how = host.hello();
    assert!(how.contains("loaded native from remote tier"), "{how}");
    assert_eq!(host.levels(), serde_json::json!({ "native": 1 }));
    let text = ok(&host.run(&["stats", "--format", "prometheus"]));
    assert!(
        text.contains("warmcache_cpu_level_requests_total{level=\"native\"} 1"),
        "{text}"
    );
    // Without cpu_level, native_first means nothing: refused rather than ignored.
    let out = Host::new(&endpoint, &bucket, "native_first = true")
        .run(&["run", common::hello().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("set cpu_level too"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_cpu_level_is_checked_against_the_cpu_and_the_other_target_settings() {
    let env = Env::new();
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    let out = env.run(&["--cpu-level", "x86-64-v9", "run", hello]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown CPU level"),
        "{}",
        stderr(&out)
    );
    let foreign = if cfg!(target_arch = "aarch64") {
        "x86-64-v2"
    } else {
        "aarch64-lse"
    };
    let out = env.run(&["--cpu-level", foreign, "run", hello]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot run CPU level"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&[
        "--cpu-level",
        "auto",
        "--target",
        &CompileTarget::host_triple(),
        "run",
        hello,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("set either"), "{}", stderr(&out));
}
