//! Persistence across a clean reopen, and recovery after the writer is killed mid-write.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warmcache_core::{Backend, BackendExt};

use crate::Harness;
use crate::basic::key;
use crate::failure::{CheckResult, Failure, PASSED, ensure, skipped};
use crate::values;

/// Environment variable that turns a re-executed test binary into the crash test's writer.
pub const CHILD_ENV: &str = "WARMCACHE_CONFORMANCE_CRASH_CHILD_DIR";
const CRASH_KEYS: u64 = 16;
const ACKS_BEFORE_KILL: usize = 40;

fn open(harness: &dyn Harness, dir: &Path) -> Result<Arc<dyn Backend>, Failure> {
    harness.open(dir).map_err(|e| {
        Failure(format!(
            "opening the backend in {} failed: {e}",
            dir.display()
        ))
    })
}

/// Every acknowledged put survives a clean reopen; deletes stay deleted; usage agrees.
/// Skipped for backends that do not claim persistence.
pub fn persistence_across_reopen(harness: &dyn Harness, dir: &Path) -> CheckResult {
    let b = open(harness, dir)?;
    if !b.capabilities().persistent {
        return skipped("the backend does not claim persistence");
    }
    futures::executor::block_on(async {
        for n in 0..60u64 {
            b.put(
                &key(n),
                values::make(n, 3, 100 + (n as usize * 977) % 70_000),
            )
            .await?;
        }
        for n in (0..60u64).step_by(5) {
            b.delete(&key(n)).await?;
        }
        b.put(&key(1), values::make(1, 4, 333)).await?;
        Ok::<_, Failure>(())
    })?;
    drop(b);
    let b = open(harness, dir)?;
    futures::executor::block_on(async {
        let mut bytes = 0u64;
        let mut entries = 0u64;
        for n in 0..60u64 {
            let got = b.get(&key(n)).await?;
            if n % 5 == 0 {
                ensure!(got.is_none(), "deleted key {n} is back after reopen");
                continue;
            }
            let (seq, len) = if n == 1 {
                (4, 333)
            } else {
                (3, 100 + (n as usize * 977) % 70_000)
            };
            let got = got.unwrap_or_default();
            ensure!(
                values::identify(&got, len) == Some((n, seq)),
                "key {n} lost or wrong after reopen ({} bytes)",
                got.len()
            );
            bytes += len as u64;
            entries += 1;
        }
        let usage = b.usage().await?;
        ensure!(
            usage.entries == entries && usage.bytes == bytes,
            "usage after reopen is {usage:?}, expected {entries} entries and {bytes} bytes"
        );
        PASSED
    })
}

fn crash_len(n: u64, round: u64) -> usize {
    16 + ((n * 7919 + round * 104_729) % (192 << 10)) as usize
}

/// Environment variable giving the crash child the first round number to write, so rounds keep
/// increasing over the kills of a torture run.
const ROUND_BASE_ENV: &str = "WARMCACHE_CONFORMANCE_CRASH_ROUND_BASE";
/// Rounds one crash child writes at most (bounded, in case the parent died).
const ROUNDS_PER_CHILD: u64 = 5_000;

/// The writer side of [`crash_recovery`], run in a child process: overwrite keys forever,
/// printing `BEGIN key round` before each put and `ACK key round` after it returned `Ok`.
pub(crate) fn crash_child(harness: &dyn Harness, dir: &Path) -> ! {
    let code = match crash_child_loop(harness, dir) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "crash child failed: {e}");
            3
        }
    };
    std::process::exit(code)
}

fn crash_child_loop(harness: &dyn Harness, dir: &Path) -> Result<(), Failure> {
    let b = open(harness, dir)?;
    let base: u64 = std::env::var(ROUND_BASE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| Failure(format!("stdout: {e}")))
    };
    for round in base + 1..=base + ROUNDS_PER_CHILD {
        for n in 0..CRASH_KEYS {
            say(format!("BEGIN {n} {round}"))?;
            futures::executor::block_on(
                b.put(&key(n), values::make(n, round, crash_len(n, round))),
            )?;
            say(format!("ACK {n} {round}"))?;
        }
    }
    Ok(())
}

/// What a series of kills did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrashReport {
    /// The backend's name.
    pub backend: String,
    /// Writer processes killed with SIGKILL.
    pub kills: u32,
    /// Kills that landed while a put was in progress (its `BEGIN` seen, its `ACK` not).
    pub mid_write: u32,
    /// Puts acknowledged over all kills, each checked after the reopen that followed.
    pub acknowledged: u64,
}

/// A child process writes and is killed with SIGKILL mid-write. The backend must then reopen
/// without error, every acknowledged put must be there (or a later write of the same key), and
/// no torn value may be visible. Skipped for backends that do not claim persistence.
///
/// `test_name` is the libtest name of the test calling this, which the child is re-executed as.
pub fn crash_recovery(harness: &dyn Harness, dir: &Path, test_name: &str) -> CheckResult {
    {
        let b = open(harness, dir)?;
        if !b.capabilities().persistent {
            return skipped("the backend does not claim persistence");
        }
    }
    crash_kills(harness, dir, test_name, 1, 0x5eed)?;
    PASSED
}

/// Kills a writer process `kills` times over the same directory, each at a random moment
/// (after a random number of acknowledged puts, then a random delay of up to 2 ms, so most kills
/// land inside a put rather than between two), and checks every acknowledged put and the
/// absence of torn values after each reopen. The scale version of [`crash_recovery`].
///
/// Call it from a test named `test_name` (its libtest path); in the child process it runs the
/// writer and never returns. The random sequence is seeded by `seed`.
///
/// # Errors
///
/// The first [`Failure`]: a reopen that fails, an acknowledged put that is missing, a torn
/// value, a backend that does not claim persistence.
pub fn crash_torture(
    harness: &dyn Harness,
    test_name: &str,
    kills: u32,
    seed: u64,
) -> Result<CrashReport, Failure> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        crash_child(harness, Path::new(&dir));
    }
    let dir = tempfile::tempdir().map_err(|e| Failure(format!("temporary directory: {e}")))?;
    let backend = {
        let b = open(harness, dir.path())?;
        ensure!(
            b.capabilities().persistent,
            "crash torture of a backend that does not claim persistence"
        );
        b.name().to_owned()
    };
    let report = crash_kills(harness, dir.path(), test_name, kills, seed)?;
    Ok(CrashReport { backend, ..report })
}

/// [`crash_torture`] as a test: `WARMCACHE_CRASH_KILLS` kills (default 10; the scale run,
/// `scripts/crash-torture.sh`, asks for 100), a line on standard error with what the kills did,
/// and a panic naming the failure, or when no kill landed inside a put (the test would then not
/// test torn writes). Call it from the test named `test_name`.
///
/// # Panics
///
/// On any [`Failure`], and when no kill landed mid-write.
pub fn crash_torture_test(harness: &dyn Harness, test_name: &str) {
    let kills = std::env::var("WARMCACHE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    match crash_torture(harness, test_name, kills, 7) {
        Ok(report) => {
            let _ = writeln!(
                std::io::stderr(),
                "crash torture of {}: {} kills, {} mid-write, {} acknowledged puts checked",
                report.backend,
                report.kills,
                report.mid_write,
                report.acknowledged
            );
            assert!(
                report.mid_write > 0,
                "no kill landed inside a put: {report:?}"
            );
        }
        Err(failure) => panic!("crash torture failed: {failure}"),
    }
}

/// One line of the child's output.
enum Said {
    Begin,
    Ack(u64, u64),
}

fn crash_kills(
    harness: &dyn Harness,
    dir: &Path,
    test_name: &str,
    kills: u32,
    seed: u64,
) -> Result<CrashReport, Failure> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked = vec![0u64; CRASH_KEYS as usize];
    let mut report = CrashReport::default();
    for kill in 0..kills {
        let base = u64::from(kill) * ROUNDS_PER_CHILD;
        let acks_before_kill = rng.random_range(1..=ACKS_BEFORE_KILL);
        let delay = Duration::from_micros(rng.random_range(0..2_000));
        let (count, mid_write) =
            kill_one(dir, test_name, base, acks_before_kill, delay, &mut acked)?;
        report.kills += 1;
        report.mid_write += u32::from(mid_write);
        report.acknowledged += count;
        check_after_crash(harness, dir, &acked)?;
    }
    Ok(report)
}

/// Runs one child until it acknowledged `acks_before_kill` puts, waits `delay`, kills it, and
/// records what it acknowledged. Returns the acknowledgements and whether a put was in
/// progress at the kill.
fn kill_one(
    dir: &Path,
    test_name: &str,
    base: u64,
    acks_before_kill: usize,
    delay: Duration,
    acked: &mut [u64],
) -> Result<(u64, bool), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure(format!("current_exe: {e}")))?;
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(ROUND_BASE_ENV, base.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Failure(format!("spawning the crash child failed: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Failure("crash child has no stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel::<Said>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            let said = match parts.next() {
                Some("BEGIN") => Said::Begin,
                Some("ACK") => {
                    let n = parts.next().and_then(|p| p.parse().ok());
                    let r = parts.next().and_then(|p| p.parse().ok());
                    let (Some(n), Some(r)) = (n, r) else { continue };
                    Said::Ack(n, r)
                }
                _ => continue,
            };
            if tx.send(said).is_err() {
                break;
            }
        }
    });
    let mut count = 0u64;
    let mut in_put = false;
    let mut note = |said: Said, count: &mut u64, in_put: &mut bool| match said {
        Said::Begin => *in_put = true,
        Said::Ack(n, r) => {
            if let Some(slot) = acked.get_mut(n as usize) {
                *slot = (*slot).max(r);
            }
            *count += 1;
            *in_put = false;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while (count as usize) < acks_before_kill && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(said) => note(said, &mut count, &mut in_put),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(Failure(format!(
                        "crash child exited early with {status} after {count} acknowledged puts"
                    )));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    std::thread::sleep(delay);
    // SIGKILL on Unix: no destructors, no flush, mid-write.
    let _ = child.kill();
    let _ = child.wait();
    // Lines printed before the kill but not yet read still count.
    let _ = reader.join();
    for said in rx.try_iter() {
        note(said, &mut count, &mut in_put);
    }
    ensure!(
        count as usize >= acks_before_kill,
        "the crash child acknowledged only {count} puts before the deadline"
    );
    Ok((count, in_put))
}

/// Reopens after a kill: every acknowledged put (or a later one of its key) is there, no value
/// is torn, listing agrees with `get`, and the backend takes writes.
fn check_after_crash(harness: &dyn Harness, dir: &Path, acked: &[u64]) -> Result<(), Failure> {
    let b = harness
        .open(dir)
        .map_err(|e| Failure(format!("reopening after SIGKILL failed: {e}")))?;
    futures::executor::block_on(async {
        let mut present = Vec::new();
        for n in 0..CRASH_KEYS {
            let got = b.get(&key(n)).await?;
            let Some(got) = got else {
                ensure!(
                    acked[n as usize] == 0,
                    "key {n} was acknowledged (round {}) but is missing after the crash",
                    acked[n as usize]
                );
                continue;
            };
            let id = values::identify(&got, got.len());
            let Some((tag, round)) = id else {
                return Err(Failure(format!(
                    "key {n} holds a torn or damaged value of {} bytes after the crash",
                    got.len()
                )));
            };
            ensure!(
                tag == n && got.len() == crash_len(n, round),
                "key {n} holds a value written for another key or truncated"
            );
            ensure!(
                round >= acked[n as usize],
                "key {n} went back to round {round} though round {} was acknowledged",
                acked[n as usize]
            );
            present.push(key(n));
        }
        let mut listed: Vec<_> = b.list_all().await?.into_iter().map(|e| e.key).collect();
        listed.sort();
        present.sort();
        ensure!(
            listed == present,
            "after the crash, listing disagrees with get"
        );
        b.put(&key(999), values::make(999, 1, 64)).await?;
        ensure!(
            b.contains(&key(999)).await?,
            "backend unusable after crash recovery"
        );
        b.delete(&key(999)).await?;
        Ok(())
    })
}
