//! Counters kept across runs in `stats.json` in the cache directory, so `warmcache stats` can
//! report hits and misses of earlier processes. Updated under a file lock by every command that
//! uses the cache.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use warmcache_core::Stats;
use warmcache_wasmtime::BaselineStats;

const FILE: &str = "stats.json";
const LOCK: &str = "stats.lock";
/// Far more than any real history; a planted huge file (or a link to `/dev/zero`) is not read.
const MAX_FILE_LEN: u64 = 16 << 20;

/// Totals over all runs: the library's counters, summed ([`Stats::accumulate`]), and the
/// requests each CPU level answered (`cpu_level`). A file of an older layout does not parse and
/// is started afresh.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct History {
    #[serde(flatten)]
    pub stats: Stats,
    /// Requests answered by each CPU level, loaded or compiled, by level name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_levels: BTreeMap<String, u64>,
    /// What baseline code did (`cold_start = "baseline"`).
    #[serde(skip_serializing_if = "is_default")]
    pub baseline: BaselineStats,
}

fn is_default(stats: &BaselineStats) -> bool {
    *stats == BaselineStats::default()
}

/// Opens `path` without following a final symbolic link or blocking on a FIFO: the cache
/// directory may be shared with others, who must not redirect our writes.
fn open_no_follow(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

fn lock(dir: &Path) -> std::io::Result<File> {
    let file = open_no_follow(
        OpenOptions::new().create(true).truncate(false).write(true),
        &dir.join(LOCK),
    )?;
    file.lock()?;
    Ok(file)
}

fn read(dir: &Path) -> History {
    let path = dir.join(FILE);
    let read = || -> std::io::Result<Vec<u8>> {
        let file = open_no_follow(OpenOptions::new().read(true), &path)?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_LEN).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!("ignoring unreadable {}: {e}", path.display());
            History::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => History::default(),
        Err(e) => {
            tracing::warn!("ignoring unreadable {}: {e}", path.display());
            History::default()
        }
    }
}

/// The totals so far (empty when there are none).
pub fn load(dir: &Path) -> History {
    let _lock = lock(dir);
    read(dir)
}

/// Adds `stats`, and the requests `levels` answered, to the totals in `dir`.
pub fn record(
    dir: &Path,
    stats: &[Stats],
    levels: Option<&warmcache_wasmtime::CpuLevels>,
    baseline: Option<&warmcache_wasmtime::Baseline>,
) -> std::io::Result<()> {
    let _lock = lock(dir)?;
    let mut history = read(dir);
    for s in stats {
        history.stats.accumulate(s);
    }
    if let Some(baseline) = baseline {
        history.baseline.accumulate(&baseline.stats());
    }
    for (answer, n) in levels.map(|l| l.used()).unwrap_or_default() {
        if n > 0 {
            *history.cpu_levels.entry(answer.to_string()).or_default() += n;
        }
    }
    write(dir, &history)
}

/// Forgets the totals.
pub fn reset(dir: &Path) -> std::io::Result<()> {
    let _lock = lock(dir)?;
    write(dir, &History::default())
}

/// Replaces the file atomically through a temporary file of a random name, created
/// exclusively: a file or link planted at a predictable name is never written through.
fn write(dir: &Path, history: &History) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{FILE}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(&serde_json::to_vec_pretty(history).map_err(std::io::Error::other)?)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(FILE)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn planted_links_are_never_written_through_or_read_without_bound() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let precious = outside.path().join("precious");
        std::fs::write(&precious, b"do not touch").unwrap();
        // The temporary name earlier releases used for this process.
        symlink(
            &precious,
            dir.path()
                .join(format!("{FILE}.{}.tmp", std::process::id())),
        )
        .unwrap();
        let dangling = outside.path().join("created-through-lock");
        symlink(&dangling, dir.path().join(LOCK)).unwrap();
        assert!(
            record(dir.path(), &[], None, None).is_err(),
            "a linked lock file was used"
        );
        std::fs::remove_file(dir.path().join(LOCK)).unwrap();

        symlink("/dev/zero", dir.path().join(FILE)).unwrap();
        assert_eq!(load(dir.path()), History::default());
        record(dir.path(), &[], None, None).unwrap();
        assert_eq!(std::fs::read(&precious).unwrap(), b"do not touch");
        assert!(!dangling.exists());
        assert!(
            std::fs::symlink_metadata(dir.path().join(FILE))
                .unwrap()
                .is_file()
        );
    }
}
