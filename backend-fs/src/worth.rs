//! What eviction by cost ([`Eviction::Cost`], GreedyDual-Size-Frequency) knows of an entry
//! file: its uses and the inflation when it was last used, in an extended attribute; what it
//! cost, from its envelope's trailer (read once per file); and the directory's inflation, in
//! the file `inflation`.
//!
//! Entry files are immutable and may be mapped, so nothing about use can go in them; an
//! attribute is metadata, like the modification time that already records the last use.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use warmcache_core::backend::{Eviction, priority};
use warmcache_core::{CacheKey, MAX_TRAILER_LEN, inspect_trailer};

use crate::files::{create_new, foreign_writer, open_regular};
use crate::store::Found;

/// The extended attribute holding an entry's recorded uses (a little-endian `u64`) and the
/// inflation at its last use (a little-endian `f64`).
const USE: &str = "user.warmcache.use";

/// How often a process that does not evict rereads the directory's inflation, which other
/// processes' evictions raise.
const REREAD: Duration = Duration::from_secs(10);

/// An entry's attribute: uses, inflation at the last one.
#[derive(Debug, Clone, Copy, Default)]
struct Use {
    uses: u64,
    inflation: f64,
}

impl Use {
    fn read(get: impl FnOnce(&mut [u8]) -> rustix::io::Result<usize>) -> Self {
        let mut buf = [0u8; 16];
        let mut half = [0u8; 8];
        match get(&mut buf[..]) {
            Ok(16) => {
                half.copy_from_slice(&buf[..8]);
                let uses = u64::from_le_bytes(half);
                half.copy_from_slice(&buf[8..]);
                let inflation = f64::from_le_bytes(half);
                Self {
                    uses,
                    inflation: if inflation.is_finite() && inflation >= 0.0 {
                        inflation
                    } else {
                        0.0
                    },
                }
            }
            _ => Self::default(),
        }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.uses.to_le_bytes());
        out[8..].copy_from_slice(&self.inflation.to_le_bytes());
        out
    }
}

/// The file tier's eviction state: the policy, the inflation value, and the costs read so far.
///
/// The inflation is shared with other processes through the file `inflation` (written after
/// each eviction that raised it, read at open and every [`REREAD`]; only a file this user or
/// root owns is believed) and the attributes (each eviction scan continues from the largest it
/// finds). Short-lived processes rarely evict, and without the file would stamp 0 on every
/// entry they touch, making it look older than any other.
#[derive(Debug)]
pub(crate) struct Worth {
    policy: Eviction,
    /// The directory's `inflation` file, and the user whose files are believed.
    file: PathBuf,
    owner: u32,
    read_at: parking_lot::Mutex<Option<Instant>>,
    /// An `f64`'s bits; non-negative floats order as their bits do.
    inflation: AtomicU64,
    /// Set when the filesystem refuses user attributes: eviction then goes by last use.
    no_attributes: AtomicBool,
    /// What each entry file cost, by key, with the file's inode (a new value is a new file).
    costs: Mutex<HashMap<CacheKey, (u64, u64)>>,
}

impl Worth {
    pub(crate) fn new(policy: Eviction, root: &Path, owner: u32) -> Self {
        Self {
            policy,
            file: root.join(crate::layout::INFLATION),
            owner,
            read_at: parking_lot::Mutex::new(None),
            inflation: AtomicU64::new(0),
            no_attributes: AtomicBool::new(false),
            costs: Mutex::new(HashMap::new()),
        }
    }

    /// The policy in force: [`Eviction::Lru`] on a filesystem without user attributes, which
    /// cannot keep what the cost policy needs.
    pub(crate) fn policy(&self) -> Eviction {
        match self.no_attributes.load(Ordering::Relaxed) {
            true => Eviction::Lru,
            false => self.policy,
        }
    }

    fn inflation(&self) -> f64 {
        f64::from_bits(self.inflation.load(Ordering::Relaxed))
    }

    /// The inflation, raised from the directory's file when it was not read for [`REREAD`].
    fn current(&self) -> f64 {
        let mut read_at = self.read_at.lock();
        if read_at.is_none_or(|at| at.elapsed() >= REREAD) {
            *read_at = Some(Instant::now());
            if let Some(saved) = self.read_file() {
                self.raise(saved);
            }
        }
        self.inflation()
    }

    fn read_file(&self) -> Option<f64> {
        let (mut file, meta) = open_regular(&self.file).ok()??;
        if foreign_writer(&meta, self.owner).is_some() || meta.len() != 8 {
            return None;
        }
        let mut buf = [0u8; 8];
        file.read_exact(&mut buf).ok()?;
        Some(f64::from_le_bytes(buf)).filter(|f| f.is_finite() && *f >= 0.0)
    }

    /// Saves the inflation for other processes, after an eviction raised it (a new file
    /// renamed over the old: a reader sees one value or the other).
    pub(crate) fn save(&self) {
        if self.policy() != Eviction::Cost {
            return;
        }
        if let Some(saved) = self.read_file() {
            self.raise(saved);
        }
        let temp = self
            .file
            .with_file_name(format!(".inflation.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&temp);
        let written = create_new(&temp)
            .and_then(|mut f| f.write_all(&self.inflation().to_le_bytes()))
            .and_then(|()| fs::rename(&temp, &self.file));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            tracing::debug!(error = %e, "could not save the file tier's inflation");
        }
    }

    fn raise(&self, inflation: f64) {
        self.inflation
            .fetch_max(inflation.max(0.0).to_bits(), Ordering::Relaxed);
    }

    /// Stamps a new entry file (before it is renamed into place) with no uses and the current
    /// inflation.
    pub(crate) fn written(&self, file: &File) {
        self.stamp(file, Use::default());
    }

    /// Counts a use of an entry file and stamps the current inflation on it. A file this user
    /// may not change keeps its attribute.
    pub(crate) fn used(&self, file: &File) {
        let old = Use::read(|buf| rustix::fs::fgetxattr(file, USE, buf));
        self.stamp(
            file,
            Use {
                uses: old.uses.saturating_add(1),
                ..old
            },
        );
    }

    fn stamp(&self, file: &File, mut now: Use) {
        now.inflation = self.current();
        let set =
            rustix::fs::fsetxattr(file, USE, &now.to_bytes(), rustix::fs::XattrFlags::empty());
        match set {
            Ok(()) => {}
            Err(rustix::io::Errno::NOTSUP) => {
                if self.policy == Eviction::Cost
                    && !self.no_attributes.swap(true, Ordering::Relaxed)
                {
                    tracing::info!(
                        "this filesystem keeps no user extended attributes: the file tier \
                         evicts least recently used entries instead of by cost"
                    );
                }
            }
            Err(e) => tracing::trace!(error = %e, "could not record the use of an entry file"),
        }
    }

    /// `found` in eviction order, lowest rank first (of equal ranks, the least recently used),
    /// each with its rank.
    pub(crate) fn ranked(&self, found: Vec<Found>) -> Vec<(f64, Found)> {
        let mut ranked: Vec<(f64, Found)> = match self.policy() {
            Eviction::Lru => found.into_iter().map(|f| (secs(f.used), f)).collect(),
            Eviction::Cost => {
                // Only a file this user (or root) wrote carries an attribute this tier wrote:
                // another user's claim of uses or inflation is theirs, and not believed.
                let uses: Vec<Use> = found
                    .iter()
                    .map(|f| match f.own {
                        true => Use::read(|buf| rustix::fs::lgetxattr(&f.path, USE, buf)),
                        false => Use::default(),
                    })
                    .collect();
                uses.iter().for_each(|u| self.raise(u.inflation));
                let ranked: Vec<(f64, Found)> = found
                    .into_iter()
                    .zip(uses)
                    .map(|(f, u)| {
                        let rank =
                            priority(u.inflation, u.uses.saturating_add(1), self.cost(&f), f.size);
                        (rank, f)
                    })
                    .collect();
                let present: HashSet<CacheKey> = ranked.iter().map(|(_, f)| f.key).collect();
                self.costs.lock().retain(|key, _| present.contains(key));
                ranked
            }
        };
        // Of equal ranks, the least recently used first.
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.used.cmp(&b.1.used)));
        ranked
    }

    /// Raises the inflation to the rank of an evicted entry, when evicting by cost.
    pub(crate) fn evicted(&self, rank: f64) {
        if self.policy() == Eviction::Cost {
            self.raise(rank);
        }
    }

    /// What the entry's trailer says it cost; 0 for a file another user could have written
    /// (their claim, not believed).
    fn cost(&self, found: &Found) -> u64 {
        if !found.own {
            return 0;
        }
        if let Some(&(ino, cost)) = self.costs.lock().get(&found.key)
            && ino == found.ino
        {
            return cost;
        }
        let cost = trailer_cost(&found.path).unwrap_or(0);
        self.costs.lock().insert(found.key, (found.ino, cost));
        cost
    }
}

/// Seconds since the epoch, for ordering by last use.
fn secs(time: std::time::SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The compute time an entry file's trailer records, reading only its end.
fn trailer_cost(path: &Path) -> Option<u64> {
    let (file, meta) = open_regular(path).ok()??;
    let len = meta.len();
    let n = len.min(MAX_TRAILER_LEN as u64);
    let mut tail = vec![0; usize::try_from(n).ok()?];
    file.read_exact_at(&mut tail, len - n).ok()?;
    inspect_trailer(&tail, len).ok().map(|m| m.compute_ms)
}
