//! A fleet under faults. Eight node processes (this test binary, run again as `fleet::node`),
//! each with a file tier of its own and a shared bucket on moto behind the fault proxy, request
//! twenty modules paced in time, so that every node asks for module `i` at about the same
//! moment; then all twenty again from their local tiers; then one module of their own, after
//! the network healed. The fault schedule: every other request faulted (resets, stalls mid-body,
//! truncated bodies, 500s, 503 SlowDown, cut uploads, latency, a bandwidth limit), then a
//! partition, then faults again, then a healthy network.
//!
//! Asserted from each node's report and the bucket afterwards: every call answered with the
//! right module; no call over its bound (its own compile, the coordination wait, and a few
//! operation timeouts); no module compiled twice on one node; every entry in the bucket complete
//! and authentic; each node's remote breakers opened (operations skipped) and were closed again
//! at the end. Over a healthy proxy the fleet compiles each module exactly once.
//!
//! `cargo test -p warmcache-wasmtime --test integration fleet:: -- --nocapture` prints the
//! figures docs/BENCHMARKS.md quotes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::common;
use crate::faults::{Fault, FaultProxy, Request};
use crate::s3;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use warmcache_core::{BackendExt, Coordination, Integrity, Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_s3::S3Backend;
use warmcache_wasmtime::ModuleCache;
use wasmtime::{Engine, Instance, Module, Store};

const NODES: usize = 8;
const MODULES: usize = 20;
/// Module `i` is first requested `i` steps after the start.
const STEP: Duration = Duration::from_millis(500);
const SECRET: &[u8] = b"the fleet test's secret, 32 bytes or more";
/// The remote tier's breakers: open after this many consecutive failures...
const THRESHOLD: u32 = 3;
/// ...for this long.
const COOLDOWN: Duration = Duration::from_millis(1500);
/// The schedule's phases, from the start: faults, a partition, faults, then healthy.
const PARTITION: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(11));
const HEALED: Duration = Duration::from_secs(14);

/// How the nodes of one run are configured.
#[derive(Clone, Copy)]
struct Settings {
    /// The remote tier's timeout per operation (and each request's).
    timeout: Duration,
    /// How long a node waits for another's compile.
    wait: Duration,
    /// When the last call (a module of the node's own) may start, from the start.
    probe_at: Duration,
}

const HEALTHY: Settings = Settings {
    timeout: warmcache_s3::REMOTE_TIMEOUT,
    wait: Duration::from_secs(60),
    probe_at: Duration::ZERO,
};

const FAULTY: Settings = Settings {
    timeout: Duration::from_millis(600),
    wait: Duration::from_secs(5),
    probe_at: Duration::from_millis(HEALED.as_millis() as u64 + COOLDOWN.as_millis() as u64 + 500),
};

/// Runs of the fleet one at a time: eight nodes of each at once would be the test of a busier
/// machine, not of the fleet.
static ONE_FLEET: Mutex<()> = Mutex::new(());

/// Module `i`: a few hundred small functions, and `id` returning `i`.
fn module(i: usize) -> Vec<u8> {
    let mut wat = common::many_functions(200, i as i32);
    wat.pop();
    wat.push_str(&format!(
        "(func (export \"id\") (result i32) i32.const {i}))"
    ));
    wat::parse_str(&wat).unwrap()
}

/// What a node reports of one call.
#[derive(Debug)]
struct Call {
    round: usize,
    module: usize,
    ms: u64,
    computes: u64,
    compute_ms: u64,
    remote_hits: u64,
    read_breaker_open: bool,
    write_breaker_open: bool,
    /// Milliseconds from the start when the call ended.
    at_ms: u64,
    answer: Result<i32, String>,
}

/// What a node reports at its end.
#[derive(Debug)]
struct Node {
    calls: Vec<Call>,
    flushed: bool,
    skipped: u64,
    remote_errors: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// One node: run by [`run_fleet`] in a process of its own, with its settings in the environment.
#[test]
#[ignore = "a node of the fleet tests, run by them in a process of its own"]
fn node() {
    let Ok(dir) = std::env::var("WARMCACHE_FLEET_NODE") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let ms = |name: &str| Duration::from_millis(var(name).parse().unwrap());
    let dir = PathBuf::from(dir);
    let start = UNIX_EPOCH + ms("WARMCACHE_FLEET_START");
    let (timeout, wait, probe_at) = (
        ms("WARMCACHE_FLEET_TIMEOUT"),
        ms("WARMCACHE_FLEET_WAIT"),
        ms("WARMCACHE_FLEET_PROBE_AT"),
    );
    let own: usize = var("WARMCACHE_FLEET_OWN").parse().unwrap();

    let remote = S3Backend::builder(format!("s3://{}/fleet", var("WARMCACHE_FLEET_BUCKET")))
        .endpoint(var("WARMCACHE_FLEET_ENDPOINT"))
        .allow_http(true)
        .region("us-east-1")
        .credentials("testing", "testing-secret")
        .timeout(timeout)
        .connect_timeout(timeout)
        .retries(1, timeout)
        .build()
        .unwrap();
    let tiers = Tiered::builder()
        .integrity(Integrity::from_secret(SECRET).unwrap())
        .coordination(Coordination::new().wait(wait).ttl(Duration::from_secs(3)))
        .tier(Tier::new(Arc::new(
            FsBackend::open(dir.join("local")).unwrap(),
        )))
        .tier(
            warmcache_s3::remote_tier(Arc::new(remote))
                .timeout(timeout)
                .circuit_breaker(THRESHOLD, COOLDOWN),
        )
        .build();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    let mut report = std::fs::File::create(dir.join("report")).unwrap();
    let mut call = |round: usize, i: usize| {
        let wasm = module(i);
        let before = cache.stats();
        let began = Instant::now();
        let answer = cache
            .get_or_compile(&engine, wasm.as_slice())
            .map(|m| id(&engine, &m))
            .map_err(|e| e.to_string().replace(char::is_whitespace, "_"));
        let took = began.elapsed();
        let after = cache.stats();
        let (remote, remote_before) = (&after.tiers[1], &before.tiers[1]);
        writeln!(
            report,
            "call {round} {i} {} {} {} {} {} {} {} {}",
            took.as_millis(),
            after.computes - before.computes,
            (after.compute_ms - before.compute_ms).ceil() as u64,
            remote.hits - remote_before.hits,
            remote.breaker_open,
            remote.write_breaker_open,
            unix_ms(SystemTime::now()).saturating_sub(unix_ms(start)),
            answer.map_or_else(|e| format!("error:{e}"), |id| id.to_string()),
        )
        .unwrap();
    };
    for i in 0..MODULES {
        sleep_until(start + STEP * i as u32);
        call(0, i);
    }
    cache.clear_live();
    for i in 0..MODULES {
        call(1, i);
    }
    sleep_until(start + probe_at);
    call(2, own);
    let flushed = cache.tiers().flush_within(Duration::from_secs(30));
    let remote = &cache.stats().tiers[1];
    writeln!(
        report,
        "end {flushed} {} {}",
        remote.skipped,
        remote.errors + remote.write_errors + remote.timeouts
    )
    .unwrap();
}

fn sleep_until(at: SystemTime) {
    if let Ok(left) = at.duration_since(SystemTime::now()) {
        std::thread::sleep(left);
    }
}

/// Calls `id` on a fresh instance of `module`.
fn id(engine: &Engine, module: &Module) -> i32 {
    let mut store = Store::new(engine, ());
    let instance = Instance::new(&mut store, module, &[]).unwrap();
    let id = instance
        .get_typed_func::<(), i32>(&mut store, "id")
        .unwrap();
    id.call(&mut store, ()).unwrap()
}

fn parse(report: &str) -> Node {
    let mut node = Node {
        calls: Vec::new(),
        flushed: false,
        skipped: 0,
        remote_errors: 0,
    };
    for line in report.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match w[0] {
            "call" => node.calls.push(Call {
                round: w[1].parse().unwrap(),
                module: w[2].parse().unwrap(),
                ms: w[3].parse().unwrap(),
                computes: w[4].parse().unwrap(),
                compute_ms: w[5].parse().unwrap(),
                remote_hits: w[6].parse().unwrap(),
                read_breaker_open: w[7].parse().unwrap(),
                write_breaker_open: w[8].parse().unwrap(),
                at_ms: w[9].parse().unwrap(),
                answer: w[10]
                    .strip_prefix("error:")
                    .map_or_else(|| Ok(w[10].parse().unwrap()), |e| Err(e.to_owned())),
            }),
            "end" => {
                node.flushed = w[1].parse().unwrap();
                node.skipped = w[2].parse().unwrap();
                node.remote_errors = w[3].parse().unwrap();
            }
            other => panic!("unknown report line {other:?}"),
        }
    }
    node
}

/// The outcome of one run: the nodes' reports, the proxy's counts, the wall time, and the
/// bucket's content as checked afterwards.
struct Fleet {
    nodes: Vec<Node>,
    faults: std::collections::BTreeMap<&'static str, u64>,
    wall: Duration,
    /// Entries in the bucket, and how many of them verified and loaded.
    listed: usize,
    verified: u64,
}

/// Starts moto's bucket behind a proxy with `schedule` (given the start), runs the nodes with
/// `settings`, waits for them, and checks the bucket directly.
fn run_fleet(
    settings: Settings,
    schedule: impl Fn(Instant, &Request<'_>) -> Fault + Send + Sync + 'static,
) -> Fleet {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let moto = s3::shared();
    let bucket = s3::unique_bucket("fleet");
    s3::create_bucket(moto.port(), &bucket);
    // Time for eight processes to start before the first request.
    let lead = Duration::from_secs(2);
    let (start, start_instant) = (SystemTime::now() + lead, Instant::now() + lead);
    let proxy = FaultProxy::start(moto.port(), move |request| schedule(start_instant, request));
    let dirs: Vec<tempfile::TempDir> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let began = Instant::now();
    let children: Vec<Child> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| {
            Command::new(std::env::current_exe().unwrap())
                .args(["fleet::node", "--exact", "--ignored", "--nocapture"])
                .env("WARMCACHE_FLEET_NODE", dir.path())
                .env("WARMCACHE_FLEET_START", unix_ms(start).to_string())
                .env("WARMCACHE_FLEET_ENDPOINT", proxy.endpoint())
                .env("WARMCACHE_FLEET_BUCKET", &bucket)
                .env(
                    "WARMCACHE_FLEET_TIMEOUT",
                    settings.timeout.as_millis().to_string(),
                )
                .env(
                    "WARMCACHE_FLEET_WAIT",
                    settings.wait.as_millis().to_string(),
                )
                .env(
                    "WARMCACHE_FLEET_PROBE_AT",
                    settings.probe_at.as_millis().to_string(),
                )
                .env("WARMCACHE_FLEET_OWN", (MODULES + n).to_string())
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (n, child) in children.into_iter().enumerate() {
        let out = wait_or_kill(child, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "node {n} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wall = began.elapsed().saturating_sub(lead);
    let nodes = dirs
        .iter()
        .map(|d| parse(&std::fs::read_to_string(d.path().join("report")).unwrap()))
        .collect();
    let faults = proxy.counts();
    drop(proxy);
    let (listed, verified) = check_bucket(&moto.endpoint(), &bucket);
    Fleet {
        nodes,
        faults,
        wall,
        listed,
        verified,
    }
}

fn wait_or_kill(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a node was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Reads every module through the bucket alone, with no proxy in between: how many entries it
/// lists, and how many of the fleet's modules it loads from a verified entry. Asserts that
/// nothing there is damaged or unauthenticated.
fn check_bucket(endpoint: &str, bucket: &str) -> (usize, u64) {
    let remote = Arc::new(s3::backend(endpoint, bucket, "fleet"));
    let listed = futures::executor::block_on(remote.list_all())
        .unwrap()
        .len();
    let tiers = Tiered::builder()
        .integrity(Integrity::from_secret(SECRET).unwrap())
        .tier(Tier::new(remote).read_only())
        .build();
    let cache = ModuleCache::new(tiers);
    let engine = Engine::default();
    for i in 0..MODULES + NODES {
        let m = cache.get_or_compile(&engine, module(i).as_slice()).unwrap();
        assert_eq!(id(&engine, &m), i as i32);
    }
    let stats = cache.stats();
    assert_eq!(stats.corrupt(), 0, "{stats:?}");
    assert_eq!(stats.forged(), 0, "{stats:?}");
    (listed, stats.tier_hits)
}

/// Asserts what holds in every run: right answers, bounded calls, at most one compile of a
/// module per node, a complete bucket. Returns the fleet's compiles of the shared modules.
fn assert_sound(fleet: &Fleet, settings: Settings) -> u64 {
    let mut shared_compiles = 0;
    for (n, node) in fleet.nodes.iter().enumerate() {
        assert_eq!(node.calls.len(), 2 * MODULES + 1, "node {n}");
        assert!(node.flushed, "node {n}: its uploads did not finish");
        for call in &node.calls {
            assert_eq!(call.answer, Ok(call.module as i32), "node {n}: {call:?}");
            // Its own compile, the coordination wait (overrun by one poll), and the tier's
            // operations around them (a read, a lease, polls, a read after the lease).
            let bound = Duration::from_millis(call.compute_ms)
                + settings.wait
                + settings.timeout * 8
                + Duration::from_secs(3);
            assert!(
                Duration::from_millis(call.ms) <= bound,
                "node {n}: a call took {} ms, over its bound of {bound:?}: {call:?}",
                call.ms
            );
        }
        for i in 0..MODULES {
            let compiles: u64 = node
                .calls
                .iter()
                .filter(|c| c.module == i)
                .map(|c| c.computes)
                .sum();
            assert!(
                compiles <= 1,
                "node {n} compiled module {i} {compiles} times"
            );
            shared_compiles += compiles;
        }
        assert!(
            node.calls
                .iter()
                .filter(|c| c.round == 1)
                .all(|c| c.computes == 0),
            "node {n}"
        );
    }
    assert_eq!(
        fleet.listed as u64, fleet.verified,
        "the bucket lists {} entries, of which {} verified and loaded",
        fleet.listed, fleet.verified
    );
    shared_compiles
}

#[test]
fn eight_nodes_share_twenty_modules_over_a_healthy_network() {
    let fleet = run_fleet(HEALTHY, |_, _| Fault::Pass);
    let compiles = assert_sound(&fleet, HEALTHY);
    eprintln!(
        "healthy fleet: {NODES} nodes, {MODULES} modules: {compiles} compiles, {} loads from the bucket, {:.1} s, requests {:?}",
        remote_hits(&fleet),
        fleet.wall.as_secs_f64(),
        fleet.faults
    );
    assert_eq!(
        compiles, MODULES as u64,
        "one compile per module in the fleet"
    );
    // Every other node loaded each shared module from the bucket.
    assert_eq!(remote_hits(&fleet), ((NODES - 1) * MODULES) as u64);
    assert_eq!(fleet.verified, (MODULES + NODES) as u64);
    for node in &fleet.nodes {
        assert_eq!(node.skipped, 0);
        assert_eq!(node.remote_errors, 0);
    }
}

/// Shared modules the nodes loaded from the bucket.
fn remote_hits(fleet: &Fleet) -> u64 {
    fleet
        .nodes
        .iter()
        .flat_map(|n| &n.calls)
        .filter(|c| c.module < MODULES)
        .map(|c| c.remote_hits)
        .sum()
}

/// Every other request faulted, by kind in turn.
const FAULTS: [Fault; 8] = [
    Fault::Reset,
    Fault::Stall(Duration::from_secs(3)),
    Fault::Truncate,
    Fault::Status(500),
    Fault::Status(503),
    Fault::CutRequest,
    Fault::Latency(Duration::from_millis(300)),
    Fault::Bandwidth(256 << 10),
];

fn schedule(start: Instant, request: &Request<'_>) -> Fault {
    let now = Instant::now();
    let (from, to) = (start + PARTITION.0, start + PARTITION.1);
    if now >= start + HEALED || now < start {
        Fault::Pass
    } else if now >= from && now < to {
        Fault::Partition(to)
    } else if request.number.is_multiple_of(2) {
        Fault::Pass
    } else {
        FAULTS[(request.number / 2) as usize % FAULTS.len()]
    }
}

#[test]
fn eight_nodes_share_twenty_modules_under_a_fault_schedule() {
    let fleet = run_fleet(FAULTY, schedule);
    let compiles = assert_sound(&fleet, FAULTY);
    eprintln!(
        "faulty fleet: {NODES} nodes, {MODULES} modules: {compiles} compiles, {} loads from the bucket, {:.1} s, requests {:?}",
        remote_hits(&fleet),
        fleet.wall.as_secs_f64(),
        fleet.faults
    );
    for fault in FAULTS.iter().chain([&Fault::Partition(Instant::now())]) {
        assert!(
            fleet.faults.get(fault.name()).copied().unwrap_or(0) > 0,
            "no request met {fault:?}: {:?}",
            fleet.faults
        );
    }
    let healed_ms = HEALED.as_millis() as u64;
    for (n, node) in fleet.nodes.iter().enumerate() {
        // The partition opened the breakers (documented: after three consecutive failures,
        // operations are skipped for the cooldown)...
        assert!(
            node.skipped > 0,
            "node {n}: no operation was skipped ({} remote failures)",
            node.remote_errors
        );
        assert!(
            node.calls
                .iter()
                .any(|c| c.read_breaker_open || c.write_breaker_open),
            "node {n}: no call saw a breaker open"
        );
        // ...and after the network healed, a probe closed them.
        let last = node.calls.last().unwrap();
        assert!(last.at_ms > healed_ms, "node {n}: {last:?}");
        assert!(
            !last.read_breaker_open && !last.write_breaker_open,
            "node {n}: a breaker was still open after the network healed: {last:?}"
        );
    }
    assert!(compiles >= MODULES as u64);
}
