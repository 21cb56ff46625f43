//! Cold compiles coordinated across real processes: eight `warmcache run`s on one cache
//! directory, and four "nodes" (each with a directory of its own) on one bucket, over moto's S3
//! server and over `file://`. Compiles are counted from each process's own `-v` report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use crate::s3;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, stderr, stdout};

const SECRET: &str = "a fleet secret of at least thirty-two bytes";

/// A WASI command that prints `ran`, with enough code that compiling it takes a while in a
/// debug build (so that processes started together overlap its compile).
fn slow_module(env: &Env, seed: u32) -> PathBuf {
    let mut wat = String::from(
        "(module\n(import \"wasi_snapshot_preview1\" \"fd_write\" (func $w (param i32 i32 i32 i32) (result i32)))\n\
         (memory (export \"memory\") 1)\n(data (i32.const 16) \"ran\\n\")\n",
    );
    for i in 0..150u32 {
        wat.push_str(&format!("(func (export \"f{i}\") (param i32) (result i32)"));
        for j in 0..60u32 {
            wat.push_str(&format!(
                " (local.set 0 (i32.add (i32.mul (local.get 0) (i32.const {})) (i32.xor (local.get 0) (i32.const {j}))))",
                seed * 100_000 + i * 61 + j
            ));
        }
        wat.push_str(" (local.get 0))\n");
    }
    wat.push_str(
        "(func (export \"_start\") (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 4))\n\
         (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))\n",
    );
    env.write(&format!("slow{seed}.wat"), wat)
}

fn spawn(mut cmd: std::process::Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for every child; kills them all and fails if any is still running after `limit`
/// (a hang is the failure this guards against, not a slow machine: the limit is generous).
fn wait_all(children: Vec<Child>, limit: Duration) -> Vec<Output> {
    let deadline = Instant::now() + limit;
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    loop {
        let mut running = 0;
        for child in children.iter_mut().flatten() {
            if child.try_wait().unwrap().is_none() {
                running += 1;
            }
        }
        if running == 0 {
            break;
        }
        if Instant::now() > deadline {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
            }
            panic!("{running} processes still running after {limit:?}: a wait did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children
        .into_iter()
        .flatten()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// Whether a process's `-v` report says it compiled.
fn compiled(out: &Output) -> bool {
    stderr(out).contains(" compiled in ")
}

fn assert_ran(out: &Output) {
    assert!(
        out.status.success() && stdout(out) == "ran\n",
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// The pid in the first lease or lock file under `dir` (recursively, in a directory named
/// `leases` or `locks`) that names one, once one does.
fn holder_pid(dir: &Path) -> Option<u32> {
    let mut stack = vec![(dir.to_owned(), false)];
    while let Some((path, inside)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name();
            if p.is_dir() {
                stack.push((p, inside || name == "leases" || name == "locks"));
            } else if inside
                && let Ok(text) = std::fs::read_to_string(&p)
                && let Some(pid) = text
                    .split("pid ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|pid| pid.parse().ok())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Polls until a holder is recorded under `dir`, then SIGKILLs that child; returns its index.
fn kill_holder(children: &mut [Child], dir: &Path) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(pid) = holder_pid(dir)
            && let Some(at) = children.iter().position(|c| c.id() == pid)
        {
            children[at].kill().unwrap();
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "no process took the lease within two minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn json_stats(env: &Env, config: Option<&Path>) -> serde_json::Value {
    let mut cmd = env.command();
    if let Some(config) = config {
        cmd.args(["--config", config.to_str().unwrap()]);
    }
    let out = cmd
        .env("FLEET_SECRET", SECRET)
        .args(["stats", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eight_processes_on_one_directory_compile_a_cold_module_once() {
    let env = Env::new();
    let module = slow_module(&env, 1);
    let children = (0..8)
        .map(|_| {
            let mut cmd = env.command();
            cmd.args(["-v", "run", module.to_str().unwrap()]);
            spawn(cmd)
        })
        .collect();
    let outputs = wait_all(children, Duration::from_secs(600));
    outputs.iter().for_each(assert_ran);
    let compiles = outputs.iter().filter(|o| compiled(o)).count();
    assert_eq!(
        compiles,
        1,
        "expected exactly one of eight processes to compile; reports:\n{}",
        outputs.iter().map(stderr).collect::<String>()
    );
    let stats = json_stats(&env, None);
    assert_eq!(stats["computes"], 1, "{stats:#}");
    assert_eq!(stats["tier_hits"], 7, "{stats:#}");
}

#[test]
fn a_killed_leader_is_taken_over_on_one_directory() {
    let env = Env::new();
    let module = slow_module(&env, 2);
    let children: Vec<Child> = (0..8)
        .map(|_| {
            let mut cmd = env.command();
            cmd.args(["-v", "run", module.to_str().unwrap()]);
            spawn(cmd)
        })
        .collect();
    kill_holder_then_one_takes_over(children, &env.cache_dir());
}

/// Kills whoever holds the lease recorded under `dir` mid-compile; every other process must
/// run the module, exactly one of them compiling it.
fn kill_holder_then_one_takes_over(mut children: Vec<Child>, dir: &Path) {
    let killed = kill_holder(&mut children, dir);
    let outputs = wait_all(children, Duration::from_secs(600));
    assert!(
        !outputs[killed].status.success() && !compiled(&outputs[killed]),
        "the holder was killed before it finished: {:?}",
        outputs[killed].status
    );
    let survivors: Vec<&Output> = outputs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != killed)
        .map(|(_, o)| o)
        .collect();
    survivors.iter().for_each(|o| assert_ran(o));
    let compiles = survivors.iter().filter(|o| compiled(o)).count();
    assert_eq!(
        compiles,
        1,
        "after the holder was killed exactly one other process should compile; reports:\n{}",
        survivors.iter().map(|o| stderr(o)).collect::<String>()
    );
}

/// A node's config: its own file tier under its environment, the shared remote tier at `url`.
fn node_config(env: &Env, url: &str, endpoint: Option<&str>, extra: &str) -> PathBuf {
    let endpoint = endpoint
        .map(|e| format!("endpoint = \"{e}\"\nregion = \"us-east-1\"\nallow_http = true\n"))
        .unwrap_or_default();
    env.write(
        "node.toml",
        format!(
            "secret_env = \"FLEET_SECRET\"\n{extra}\n[[tiers]]\nkind = \"fs\"\n\n\
             [[tiers]]\nkind = \"s3\"\nurl = \"{url}\"\n{endpoint}"
        ),
    )
}

struct Node {
    env: Env,
    config: PathBuf,
}

impl Node {
    fn new(url: &str, endpoint: Option<&str>, extra: &str) -> Self {
        let env = Env::new();
        let config = node_config(&env, url, endpoint, extra);
        Self { env, config }
    }

    fn start(&self, module: &Path) -> Child {
        let mut cmd = self.env.command();
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
            .env("FLEET_SECRET", SECRET)
            .args(["--config", self.config.to_str().unwrap()])
            .args(["-v", "run", module.to_str().unwrap()]);
        spawn(cmd)
    }
}

fn fleet_compiles_once(url: &str, endpoint: Option<&str>) {
    let nodes: Vec<Node> = (0..4).map(|_| Node::new(url, endpoint, "")).collect();
    let module = slow_module(&nodes[0].env, 3);
    let children = nodes.iter().map(|n| n.start(&module)).collect();
    let outputs = wait_all(children, Duration::from_secs(600));
    outputs.iter().for_each(assert_ran);
    let compiles = outputs.iter().filter(|o| compiled(o)).count();
    assert_eq!(
        compiles,
        1,
        "expected exactly one compile among four nodes on one bucket; reports:\n{}",
        outputs.iter().map(stderr).collect::<String>()
    );
    for out in outputs.iter().filter(|o| !compiled(o)) {
        assert!(
            stderr(out).contains("loaded from remote tier"),
            "{}",
            stderr(out)
        );
    }
}

#[test]
fn four_nodes_on_one_bucket_compile_once() {
    let moto = s3::shared();
    let bucket = s3::unique_bucket("fleet");
    s3::create_bucket(moto.port(), &bucket);
    fleet_compiles_once(&format!("s3://{bucket}/modules"), Some(&moto.endpoint()));
}

#[test]
fn four_nodes_on_one_file_store_compile_once() {
    let shared = tempfile::tempdir().unwrap();
    fleet_compiles_once(&format!("file://{}", shared.path().display()), None);
}

#[test]
fn a_killed_lease_holder_is_taken_over_after_expiry() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("file://{}", shared.path().display());
    let nodes: Vec<Node> = (0..4)
        .map(|_| Node::new(&url, None, "lease_ttl_ms = 1500"))
        .collect();
    let module = slow_module(&nodes[0].env, 4);
    let children = nodes.iter().map(|n| n.start(&module)).collect();
    kill_holder_then_one_takes_over(children, shared.path());
}

#[test]
fn an_unreachable_bucket_makes_every_node_compile_without_waiting() {
    // Nothing listens on port 9 of loopback.
    let nodes: Vec<Node> = (0..4)
        .map(|_| {
            Node::new(
                "s3://nowhere/modules",
                Some("http://127.0.0.1:9"),
                "coordination_wait_ms = 600000",
            )
        })
        .collect();
    let module = slow_module(&nodes[0].env, 5);
    let children = nodes.iter().map(|n| n.start(&module)).collect();
    let outputs = wait_all(children, Duration::from_secs(300));
    outputs.iter().for_each(assert_ran);
    assert_eq!(outputs.iter().filter(|o| compiled(o)).count(), 4);
    for node in &nodes {
        let stats = json_stats(&node.env, Some(&node.config));
        let remote = stats["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "s3")
            .unwrap();
        assert_eq!(remote["lease_waits"], 0, "{stats:#}");
        assert_eq!(remote["leases"], 0, "{stats:#}");
        assert!(remote["lease_errors"].as_u64().unwrap() >= 1, "{stats:#}");
    }
}

/// The entries of the tier of `kind` in a `stats --json` report.
fn entries_of(stats: &serde_json::Value, kind: &str) -> u64 {
    stats["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == kind)
        .and_then(|t| t["entries"].as_u64())
        .unwrap()
}

/// How many reports say the process compiled baseline code, and how many that it loaded it.
fn baseline_reports(outputs: &[Output]) -> (usize, usize) {
    let count = |what: &str| outputs.iter().filter(|o| stderr(o).contains(what)).count();
    (
        count("compiled baseline code"),
        count("loaded baseline code from"),
    )
}

#[test]
fn eight_processes_with_baseline_first_compile_once_with_each_compiler() {
    let env = Env::new();
    let module = slow_module(&env, 6);
    let children = (0..8)
        .map(|_| {
            let mut cmd = env.command();
            cmd.args(["-v", "--cold-start", "baseline", "run"])
                .arg(&module);
            spawn(cmd)
        })
        .collect();
    let outputs = wait_all(children, Duration::from_secs(600));
    outputs.iter().for_each(assert_ran);
    let reports = || outputs.iter().map(stderr).collect::<String>();
    // One Winch compile answered everyone at first; one Cranelift compile replaced it.
    assert_eq!(baseline_reports(&outputs), (1, 7), "{}", reports());
    let stats = json_stats(&env, None);
    assert_eq!(stats["computes"], 2, "{stats:#}\n{}", reports());
    assert_eq!(stats["baseline"]["served"], 8, "{stats:#}");
    assert_eq!(stats["baseline"]["upgrades"], 8, "{stats:#}");
    // The baseline entry is gone from the directory: only the optimized one is left.
    assert_eq!(entries_of(&stats, "fs"), 1, "{stats:#}");
    // The next process runs the optimized code.
    let out = env.run(&[
        "-v",
        "--cold-start",
        "baseline",
        "run",
        module.to_str().unwrap(),
    ]);
    assert_ran(&out);
    assert!(
        stderr(&out).contains("loaded from disk tier"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn four_nodes_with_baseline_first_on_one_bucket_compile_once_with_each_compiler() {
    let moto = s3::shared();
    let bucket = s3::unique_bucket("baseline");
    s3::create_bucket(moto.port(), &bucket);
    let (url, endpoint) = (format!("s3://{bucket}/modules"), moto.endpoint());
    let nodes: Vec<Node> = (0..4)
        .map(|_| Node::new(&url, Some(&endpoint), "[engine]\ncold_start = \"baseline\""))
        .collect();
    let module = slow_module(&nodes[0].env, 7);
    let children = nodes.iter().map(|n| n.start(&module)).collect();
    let outputs = wait_all(children, Duration::from_secs(600));
    outputs.iter().for_each(assert_ran);
    let reports = || outputs.iter().map(stderr).collect::<String>();
    // The lease holder published baseline code; the others loaded it from the bucket.
    assert_eq!(baseline_reports(&outputs), (1, 3), "{}", reports());
    let mut computes = 0;
    for node in &nodes {
        let stats = json_stats(&node.env, Some(&node.config));
        computes += stats["computes"].as_u64().unwrap();
        assert_eq!(stats["baseline"]["upgrades"], 1, "{stats:#}");
        // Each node's own directory keeps only the optimized artifact; the bucket keeps both
        // until its eviction takes the baseline one.
        assert_eq!(entries_of(&stats, "fs"), 1, "{stats:#}");
    }
    assert_eq!(computes, 2, "{}", reports());
}
