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

/// The writer side of [`crash_recovery`], run in a child process: overwrite keys forever,
/// printing `ACK key round` after each put returns `Ok`.
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
    let mut out = std::io::stdout().lock();
    // Bounded, in case the parent died and nobody kills us.
    for round in 1..=5_000u64 {
        for n in 0..CRASH_KEYS {
            futures::executor::block_on(
                b.put(&key(n), values::make(n, round, crash_len(n, round))),
            )?;
            writeln!(out, "ACK {n} {round}")
                .and_then(|()| out.flush())
                .map_err(|e| Failure(format!("stdout: {e}")))?;
        }
    }
    Ok(())
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
    let exe = std::env::current_exe().map_err(|e| Failure(format!("current_exe: {e}")))?;
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Failure(format!("spawning the crash child failed: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Failure("crash child has no stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ACK") {
                continue;
            }
            let n = parts.next().and_then(|p| p.parse().ok());
            let r = parts.next().and_then(|p| p.parse().ok());
            if let (Some(n), Some(r)) = (n, r)
                && tx.send((n, r)).is_err()
            {
                break;
            }
        }
    });
    let mut acked = vec![0u64; CRASH_KEYS as usize];
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count < ACKS_BEFORE_KILL && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((n, r)) => {
                if let Some(slot) = acked.get_mut(n as usize) {
                    *slot = (*slot).max(r);
                }
                count += 1;
            }
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
    // SIGKILL on Unix: no destructors, no flush, mid-write.
    let _ = child.kill();
    let _ = child.wait();
    // Acks printed before the kill but not yet read still count as acknowledged.
    let _ = reader.join();
    for (n, r) in rx.try_iter() {
        if let Some(slot) = acked.get_mut(n as usize) {
            *slot = (*slot).max(r);
        }
        count += 1;
    }
    ensure!(
        count >= ACKS_BEFORE_KILL,
        "the crash child acknowledged only {count} puts before the deadline"
    );

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
        PASSED
    })
}
