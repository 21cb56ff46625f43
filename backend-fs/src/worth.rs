//! What cost-aware eviction ([`Eviction::Cost`]) knows of an entry file: its uses, counted in an
//! extended attribute; what it cost, from its envelope's trailer (read once per file); its
//! age, from its birth time.
//!
//! Entry files are immutable and may be mapped, so nothing about use can go in them; an
//! attribute is metadata, like the modification time that already records the last use.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::SystemTime;

use parking_lot::Mutex;
use warmcache_core::backend::{Eviction, priority};
use warmcache_core::{CacheKey, MAX_TRAILER_LEN, inspect_trailer};

use crate::files::open_regular;
use crate::store::Found;

/// The extended attribute holding an entry's recorded uses (a little-endian `u64`).
const USES: &str = "user.warmcache.uses";

/// Counts a use of the entry `file` (when the store records one). On a filesystem without
/// user attributes, or a file this user may not change, nothing is counted: every entry then
/// counts one use, and cost-aware eviction ranks by cost, size and age alone.
pub(crate) fn count_use(file: &File) {
    let uses = read_uses(|buf| rustix::fs::fgetxattr(file, USES, buf));
    if let Err(e) = rustix::fs::fsetxattr(
        file,
        USES,
        &uses.saturating_add(1).to_le_bytes(),
        rustix::fs::XattrFlags::empty(),
    ) {
        tracing::trace!(error = %e, "could not count a use of an entry file");
    }
}

fn read_uses(get: impl FnOnce(&mut [u8]) -> rustix::io::Result<usize>) -> u64 {
    let mut buf = [0u8; 8];
    match get(&mut buf[..]) {
        Ok(8) => u64::from_le_bytes(buf),
        _ => 0,
    }
}

/// What each entry file cost to produce, remembered by file (a new value is a new file), so
/// that eviction reads each trailer once.
#[derive(Debug, Default)]
pub(crate) struct Costs(Mutex<HashMap<CacheKey, (u64, u64)>>);

impl Costs {
    /// The entries of `found` in the order `policy` evicts them: lowest rank first.
    pub(crate) fn order(&self, policy: Eviction, found: &mut [Found]) {
        match policy {
            Eviction::Lru => found.sort_by_key(|f| f.used),
            Eviction::Cost => {
                let now = SystemTime::now();
                let ranked: HashMap<CacheKey, f64> =
                    found.iter().map(|f| (f.key, self.rank(f, now))).collect();
                found.sort_by(|a, b| ranked[&a.key].total_cmp(&ranked[&b.key]));
                let present: HashSet<CacheKey> = found.iter().map(|f| f.key).collect();
                self.0.lock().retain(|key, _| present.contains(key));
            }
        }
    }

    /// The entry's [`priority`]: uses count the write too; age is in seconds since the file
    /// was created (its last modification where the filesystem keeps no birth time).
    fn rank(&self, found: &Found, now: SystemTime) -> f64 {
        let uses = read_uses(|buf| rustix::fs::lgetxattr(&found.path, USES, buf));
        let age = now.duration_since(found.born).unwrap_or_default();
        priority(
            self.cost(found),
            uses.saturating_add(1),
            found.size,
            age.as_secs_f64(),
        )
    }

    fn cost(&self, found: &Found) -> u64 {
        if let Some(&(ino, cost)) = self.0.lock().get(&found.key)
            && ino == found.ino
        {
            return cost;
        }
        let cost = trailer_cost(&found.path).unwrap_or(0);
        self.0.lock().insert(found.key, (found.ino, cost));
        cost
    }
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
