//! Persistence across a clean reopen, and recovery after the writer is killed mid-write.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use warmcache_core::{Backend, BackendExt};

use crate::Harness;
use crate::basic::key;
use crate::budget::Budget;
use crate::failure::{CheckResult, Failure, PASSED, ensure, skipped};
use crate::model::Model;
use crate::observe;
use crate::values;

/// Environment variable that turns a re-executed test binary into the crash test's writer.
pub const CHILD_ENV: &str = "WARMCACHE_CONFORMANCE_CRASH_CHILD_DIR";
/// Keys the crash child overwrites in turn.
const CRASH_KEYS: u64 = 8;
/// The crash child acknowledges between 1 and this many puts before the kill is timed.
const ACKS_BEFORE_KILL: usize = 12;
/// The largest value the crash child writes: large enough that a write takes long enough to be
/// interrupted (a torn in-place write is then visible), cut to what the backend holds.
const CRASH_MAX_LEN: usize = 4 << 20;
/// Kills [`crash_recovery`] aims to land inside a put, and the most it tries for them.
const MID_WRITE_KILLS: u32 = 3;
const MAX_KILLS: u32 = 20;

fn open(harness: &dyn Harness, dir: &Path) -> Result<Arc<dyn Backend>, Failure> {
    harness.open(dir).map_err(|e| {
        Failure(format!(
            "opening the backend in {} failed: {e}",
            dir.display()
        ))
    })
}

/// Every acknowledged put survives a clean reopen; deletes stay deleted; listing and usage
/// agree. A bounded backend may have evicted entries while they were written, but a reopen
/// loses none of those it held. Skipped for backends that do not claim persistence.
pub fn persistence_across_reopen(harness: &dyn Harness, dir: &Path) -> CheckResult {
    let b = open(harness, dir)?;
    if !b.capabilities().persistent {
        return skipped("the backend does not claim persistence");
    }
    let budget = Budget::of(&*b)?;
    let len = |n: u64| budget.len(100 + (n as usize * 977) % 70_000);
    let count = budget.count(60, 35_000);
    let mut model = Model::new(&budget);
    let before = futures::executor::block_on(async {
        for n in 0..count {
            model.put(&b, n, 3, len(n)).await?;
        }
        for n in (0..count).step_by(5) {
            model.delete(&b, n).await?;
        }
        model.put(&b, 1, 4, 333).await?;
        model.check(&b, &budget, "before the reopen").await
    })?;
    drop(b);
    let b = open(harness, dir)?;
    let after = futures::executor::block_on(model.check(&b, &budget, "after a clean reopen"))?;
    if let Some(lost) = before.present.difference(&after.present).next() {
        return Err(Failure(format!(
            "key {lost} was there before a clean reopen and is missing after it ({} of {} \
             entries survived)",
            after.entries, before.entries
        )));
    }
    PASSED
}

/// The length of the value the crash child writes for key `n` in `round`: from 16 bytes to
/// `max`, mostly large.
fn crash_len(n: u64, round: u64, max: usize) -> usize {
    let spread = (n.wrapping_mul(7919) ^ round.wrapping_mul(104_729)) % 1000;
    let len = if spread < 100 {
        spread as usize
    } else {
        max / 4 + (max / 4 * 3) * spread as usize / 1000
    };
    len.clamp(16, max.max(16))
}

/// The largest crash value for the backend `b`: [`CRASH_MAX_LEN`], cut so that all the crash
/// keys together take at most a quarter of a bounded backend's capacity.
fn crash_max_len(b: &dyn Backend) -> Result<usize, Failure> {
    let budget = Budget::of(b)?;
    let per_key = budget
        .capacity
        .map_or(usize::MAX, |c| (c / 4 / CRASH_KEYS) as usize);
    Ok(budget.len(CRASH_MAX_LEN).min(per_key))
}

/// Environment variable giving the crash child the first round number to write, so rounds keep
/// increasing over the kills of a torture run.
const ROUND_BASE_ENV: &str = "WARMCACHE_CONFORMANCE_CRASH_ROUND_BASE";
/// Rounds one crash child writes at most (bounded, in case the parent died).
const ROUNDS_PER_CHILD: u64 = 5_000;

/// The writer side of [`crash_recovery`], run in a child process: overwrite keys forever,
/// printing `BEGIN key round` before each put and `ACK key round micros` after it returned `Ok`
/// (with how long it took, which the parent times its kill by).
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
    let max = crash_max_len(&*b)?;
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
            let value = values::make(n, round, crash_len(n, round, max));
            say(format!("BEGIN {n} {round}"))?;
            let started = Instant::now();
            futures::executor::block_on(b.put(&key(n), value))?;
            let micros = started.elapsed().as_micros();
            say(format!("ACK {n} {round} {micros}"))?;
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

/// A child process overwrites values of up to 4 MiB and is killed with SIGKILL, timed to land
/// inside a put (a random point of the time its puts take), until three kills landed mid-write
/// (at most 20 kills). After each kill the backend must reopen without error, every acknowledged
/// put must be there (or a later write of the same key), no torn value may be visible, and
/// listing must agree with `get`. Skipped for backends that do not claim persistence, and when no
/// kill could be landed inside a put (puts too fast to interrupt).
///
/// `test_name` is the libtest name of the test calling this, which the child is re-executed as.
pub fn crash_recovery(harness: &dyn Harness, dir: &Path, test_name: &str) -> CheckResult {
    {
        let b = open(harness, dir)?;
        if !b.capabilities().persistent {
            return skipped("the backend does not claim persistence");
        }
    }
    let report = crash_kills(
        harness,
        dir,
        test_name,
        MAX_KILLS,
        Some(MID_WRITE_KILLS),
        0x5eed,
    )?;
    if report.mid_write == 0 {
        return skipped(format!(
            "none of {} kills landed inside a put (puts finish too fast to interrupt)",
            report.kills
        ));
    }
    PASSED
}

/// Kills a writer process `kills` times over the same directory, each timed to land inside a
/// put, and checks every acknowledged put and the absence of torn values after each reopen. The
/// scale version of [`crash_recovery`].
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
    let report = crash_kills(harness, dir.path(), test_name, kills, None, seed)?;
    Ok(CrashReport { backend, ..report })
}

/// [`crash_torture`] as a test: `WARMCACHE_CRASH_KILLS` kills (default 10; the scale run,
/// `scripts/crash-torture.sh`, asks for 100), a line on standard error with what the kills did,
/// and a panic naming the failure, or when no kill landed inside a put (the test would then not
/// test torn writes). Call it from the test named `test_name`, its full name in the test
/// binary: [`test_name`](crate::test_name)`(module_path!(), "name")`.
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
    Ack(u64, u64, u64),
}

/// Up to `kills` kills, stopping early once `enough` landed mid-write.
fn crash_kills(
    harness: &dyn Harness,
    dir: &Path,
    test_name: &str,
    kills: u32,
    enough: Option<u32>,
    seed: u64,
) -> Result<CrashReport, Failure> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked = vec![0u64; CRASH_KEYS as usize];
    let mut report = CrashReport::default();
    for kill in 0..kills {
        let base = u64::from(kill) * ROUNDS_PER_CHILD;
        let acks_before_kill = rng.random_range(1..=ACKS_BEFORE_KILL);
        // Where inside a put to land, as a fraction of the median put time.
        let point = rng.random_range(0.05..0.95);
        let (count, mid_write) =
            kill_one(dir, test_name, base, acks_before_kill, point, &mut acked)?;
        report.kills += 1;
        report.mid_write += u32::from(mid_write);
        report.acknowledged += count;
        check_after_crash(harness, dir, &acked)?;
        if enough.is_some_and(|enough| report.mid_write >= enough) {
            break;
        }
    }
    Ok(report)
}

/// Runs one child until it acknowledged `acks_before_kill` puts, then, once it begins the next
/// put, waits `point` times its median put time and kills it, and records what it
/// acknowledged. Returns the acknowledgements and whether a put was in progress at the kill.
fn kill_one(
    dir: &Path,
    test_name: &str,
    base: u64,
    acks_before_kill: usize,
    point: f64,
    acked: &mut [u64],
) -> Result<(u64, bool), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure(format!("current_exe: {e}")))?;
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(ROUND_BASE_ENV, base.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure(format!("spawning the crash child failed: {e}")))?;
    let said_on_stderr = stderr_tail(child.stderr.take());
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Failure("crash child has no stdout".into()))?;
    let (rx, reader) = read_said(stdout);
    let mut count = 0u64;
    let mut in_put = false;
    let mut durations = Vec::new();
    let mut note =
        |said: Said, count: &mut u64, in_put: &mut bool, durations: &mut Vec<u64>| match said {
            Said::Begin => *in_put = true,
            Said::Ack(n, r, micros) => {
                if let Some(slot) = acked.get_mut(n as usize) {
                    *slot = (*slot).max(r);
                }
                durations.push(micros);
                *count += 1;
                *in_put = false;
            }
        };
    let deadline = Instant::now() + Duration::from_secs(120);
    // Until enough acknowledgements, and then until the next put begins.
    while ((count as usize) < acks_before_kill || !in_put) && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(said) => note(said, &mut count, &mut in_put, &mut durations),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(exited_early(&status, count, &said_on_stderr));
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Its stdout closed: it is exiting (a panic, an error) unless it closed it.
                let waited = Instant::now();
                while waited.elapsed() < Duration::from_secs(5) {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(exited_early(&status, count, &said_on_stderr));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                break;
            }
        }
    }
    let mut sorted = durations.clone();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    std::thread::sleep(Duration::from_micros((median as f64 * point) as u64));
    // SIGKILL on Unix: no destructors, no flush, mid-write.
    let _ = child.kill();
    let _ = child.wait();
    // Lines printed before the kill but not yet read still count.
    let _ = reader.join();
    for said in rx.try_iter() {
        note(said, &mut count, &mut in_put, &mut durations);
    }
    ensure!(
        count as usize >= acks_before_kill,
        "the crash child acknowledged only {count} puts before the deadline"
    );
    Ok((count, in_put))
}

/// Reads what the crash child says on `stdout`, line by line, on a thread of its own.
fn read_said(
    stdout: std::process::ChildStdout,
) -> (std::sync::mpsc::Receiver<Said>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<Said>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            let said = match parts.next() {
                Some("BEGIN") => Said::Begin,
                Some("ACK") => {
                    let mut number = || parts.next().and_then(|p| p.parse().ok());
                    let (Some(n), Some(r), Some(micros)) = (number(), number(), number()) else {
                        continue;
                    };
                    Said::Ack(n, r, micros)
                }
                _ => continue,
            };
            if tx.send(said).is_err() {
                break;
            }
        }
    });
    (rx, reader)
}

/// What the crash child wrote to standard error: its first lines (a panic's message comes
/// first, before any backtrace) and its last ones.
#[derive(Default)]
struct ChildSaid {
    first: Vec<String>,
    last: VecDeque<String>,
    skipped: usize,
}

/// Lines kept from each end of the crash child's standard error.
const KEPT_LINES: usize = 10;

/// Keeps what the crash child writes to standard error while it runs, passing it on to this
/// process's standard error as before.
fn stderr_tail(stderr: Option<std::process::ChildStderr>) -> Arc<Mutex<ChildSaid>> {
    let said = Arc::new(Mutex::new(ChildSaid::default()));
    if let Some(stderr) = stderr {
        let kept = Arc::clone(&said);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(std::io::stderr(), "{line}");
                let mut kept = kept.lock();
                if kept.first.len() < KEPT_LINES {
                    kept.first.push(line);
                    continue;
                }
                if kept.last.len() == KEPT_LINES {
                    kept.last.pop_front();
                    kept.skipped += 1;
                }
                kept.last.push_back(line);
            }
        });
    }
    said
}

/// The failure of a crash child that exited before it was killed, with what it said last.
fn exited_early(status: &std::process::ExitStatus, count: u64, said: &Mutex<ChildSaid>) -> Failure {
    // Give the reader a moment to take the child's last lines.
    std::thread::sleep(Duration::from_millis(100));
    let said = said.lock();
    let mut lines = said.first.clone();
    if said.skipped > 0 {
        lines.push(format!("[{} lines]", said.skipped));
    }
    lines.extend(said.last.iter().cloned());
    let said = if lines.is_empty() {
        "it wrote nothing to standard error".to_owned()
    } else {
        format!("it wrote to standard error:\n{}", lines.join("\n"))
    };
    Failure(format!(
        "the crash child exited by itself with {status} after {count} acknowledged puts, \
         before it was killed; {said}"
    ))
}

/// Reopens after a kill: every acknowledged put (or a later one of its key) is there, no value
/// is torn, listing agrees with `get`, and the backend takes writes.
fn check_after_crash(harness: &dyn Harness, dir: &Path, acked: &[u64]) -> Result<(), Failure> {
    let b = harness
        .open(dir)
        .map_err(|e| Failure(format!("reopening after SIGKILL failed: {e}")))?;
    let max = crash_max_len(&*b)?;
    futures::executor::block_on(async {
        let mut present = Vec::new();
        for n in 0..CRASH_KEYS {
            let got = observe::read(&b, &key(n)).await?;
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
                    "after the crash key {n} holds {} bytes that are no complete value: a torn \
                     write (write a new value to a temporary file or transaction and rename or \
                     commit it over the old one)",
                    got.len()
                )));
            };
            ensure!(
                tag == n,
                "after the crash key {n} holds the value of key {tag} (round {round})"
            );
            let full = crash_len(n, round, max);
            ensure!(
                got.len() == full,
                "after the crash key {n} holds the first {} of the {full} bytes of its round \
                 {round} value: a torn write (write a new value to a temporary file or \
                 transaction and rename or commit it over the old one)",
                got.len()
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
            "after the crash the listing ({} keys) disagrees with get ({} keys)",
            listed.len(),
            present.len()
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
