//! The synchronous file operations: atomic writes, reads, scans and eviction.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use warmcache_core::backend::Limits;
use warmcache_core::{CacheKey, Context, Error, KeyInfo, Op, Usage};

use crate::layout::{self, entry_path, fan_dir, is_fan, parse_entry, parse_temp, temp_name};

/// A temporary file older than this is a crashed writer's, whatever its pid says.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Eviction frees space down to this fraction of the capacity, so it does not run on every put.
const LOW_WATERMARK: f64 = 0.9;

pub(crate) struct Store {
    root: PathBuf,
    name: String,
    limits: Limits,
    touch_interval: Duration,
    /// This process's estimate of the bytes stored, reset by every scan. Writes from other
    /// processes are discovered by the next scan.
    approx_bytes: AtomicU64,
    evicting: Mutex<()>,
    nonce: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// One entry found by a scan.
pub(crate) struct Found {
    pub(crate) key: CacheKey,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) used: SystemTime,
}

impl Store {
    pub(crate) fn open(
        root: PathBuf,
        name: String,
        limits: Limits,
        touch_interval: Duration,
    ) -> Result<Self, Error> {
        let ctx = || Context::new(name.clone(), Op::Open);
        let entries = layout::entries_dir(&root);
        fs::create_dir_all(&entries).map_err(|e| io_err(ctx(), &entries, e))?;
        let marker = root.join(layout::MARKER);
        if !marker.exists() {
            fs::write(&marker, b"warmcache file tier, format 1\n")
                .map_err(|e| io_err(ctx(), &marker, e))?;
        }
        // Probe that we can create files here, for an early, clear error.
        let probe = entries.join(format!(".probe.{}", std::process::id()));
        File::create(&probe).map_err(|e| io_err(ctx(), &entries, e))?;
        let _ = fs::remove_file(&probe);
        let store = Self {
            root,
            nonce: AtomicU64::new(seed()),
            name,
            limits,
            touch_interval,
            approx_bytes: AtomicU64::new(0),
            evicting: Mutex::new(()),
        };
        let total: u64 = store.scan(Op::Open)?.iter().map(|f| f.size).sum();
        store.approx_bytes.store(total, Ordering::Relaxed);
        Ok(store)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    fn ctx(&self, op: Op, key: Option<&CacheKey>) -> Context {
        Context::maybe_key(self.name.clone(), op, key)
    }

    /// Writes `value` to a unique temporary file in the entry's directory, syncs it, renames it
    /// over the entry and syncs the directory: readers see the old file or the new one, and
    /// after a crash either, never a part.
    pub(crate) fn put(&self, key: &CacheKey, value: &[u8]) -> Result<(), Error> {
        let ctx = || self.ctx(Op::Put, Some(key));
        let size = value.len() as u64;
        self.limits.check(&self.name, key, size)?;
        let dir = fan_dir(&self.root, key);
        fs::create_dir_all(&dir).map_err(|e| io_err(ctx(), &dir, e))?;
        let temp = dir.join(temp_name(key, self.nonce.fetch_add(1, Ordering::Relaxed)));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(value)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_err(ctx(), &temp, e));
        }
        let target = entry_path(&self.root, key);
        if let Err(e) = fs::rename(&temp, &target) {
            let _ = fs::remove_file(&temp);
            return Err(io_err(ctx(), &target, e));
        }
        sync_dir(&dir).map_err(|e| io_err(ctx(), &dir, e))?;
        let after = self.approx_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if after > self.limits.capacity() {
            self.evict(Some(key))?;
        }
        Ok(())
    }

    pub(crate) fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error> {
        let path = entry_path(&self.root, key);
        let Some(mut file) = self.open_entry(key, &path, Op::Get)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| io_err(self.ctx(Op::Get, Some(key)), &path, e))?;
        Ok(Some(Bytes::from(buf)))
    }

    pub(crate) fn open_file(&self, key: &CacheKey) -> Result<Option<File>, Error> {
        let path = entry_path(&self.root, key);
        self.open_entry(key, &path, Op::OpenFile)
    }

    fn open_entry(&self, key: &CacheKey, path: &Path, op: Op) -> Result<Option<File>, Error> {
        match File::open(path) {
            Ok(file) => {
                self.touch(&file);
                Ok(Some(file))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(self.ctx(op, Some(key)), path, e)),
        }
    }

    /// Records a use by moving the file's modification time to now, at most once per
    /// `touch_interval`: entries are immutable, so their mtime is free to mean "last used".
    fn touch(&self, file: &File) {
        let now = SystemTime::now();
        let stale = file
            .metadata()
            .and_then(|m| m.modified())
            .map(|m| now.duration_since(m).unwrap_or_default() >= self.touch_interval)
            .unwrap_or(true);
        if stale && let Err(e) = file.set_modified(now) {
            tracing::debug!(backend = %self.name, error = %e, "could not record use");
        }
    }

    pub(crate) fn delete(&self, key: &CacheKey) -> Result<(), Error> {
        let path = entry_path(&self.root, key);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => {
                let _ = self
                    .approx_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some(b.saturating_sub(size))
                    });
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(self.ctx(Op::Delete, Some(key)), &path, e)),
        }
    }

    pub(crate) fn contains(&self, key: &CacheKey) -> Result<bool, Error> {
        let path = entry_path(&self.root, key);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(self.ctx(Op::Contains, Some(key)), &path, e)),
        }
    }

    pub(crate) fn clear(&self) -> Result<(), Error> {
        let _evicting = self.evicting.lock();
        for found in self.scan(Op::Clear)? {
            remove_if_present(&found.path)
                .map_err(|e| io_err(self.ctx(Op::Clear, None), &found.path, e))?;
        }
        self.approx_bytes.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Every entry, sorted by key.
    pub(crate) fn list_sorted(&self) -> Result<Vec<KeyInfo>, Error> {
        let mut all: Vec<KeyInfo> = self
            .scan(Op::List)?
            .into_iter()
            .map(|f| KeyInfo {
                key: f.key,
                size: f.size,
            })
            .collect();
        all.sort_by_key(|e| e.key);
        Ok(all)
    }

    pub(crate) fn usage(&self) -> Result<Usage, Error> {
        let found = self.scan(Op::Usage)?;
        Ok(Usage {
            entries: found.len() as u64,
            bytes: found.iter().map(|f| f.size).sum(),
        })
    }

    /// Deletes least recently used entries (never `keep`) until the directory holds at most
    /// [`LOW_WATERMARK`] of the capacity, when it holds more than the capacity.
    pub(crate) fn evict(&self, keep: Option<&CacheKey>) -> Result<u64, Error> {
        let capacity = self.limits.capacity();
        let target = (capacity as f64 * LOW_WATERMARK) as u64;
        self.evict_down_to(capacity, target, keep)
    }

    /// Deletes least recently used entries until the directory holds at most `max_bytes`.
    pub(crate) fn shrink_to(&self, max_bytes: u64) -> Result<u64, Error> {
        self.evict_down_to(max_bytes, max_bytes, None)
    }

    /// When the directory holds more than `over`, deletes least recently used entries (never
    /// `keep`) until it holds at most `target`.
    fn evict_down_to(&self, over: u64, target: u64, keep: Option<&CacheKey>) -> Result<u64, Error> {
        let _evicting = self.evicting.lock();
        let mut found = self.scan(Op::Put)?;
        let mut total: u64 = found.iter().map(|f| f.size).sum();
        let mut evicted = 0;
        if total > over {
            found.sort_by_key(|f| f.used);
            for victim in found.iter().filter(|f| Some(&f.key) != keep) {
                if total <= target {
                    break;
                }
                remove_if_present(&victim.path)
                    .map_err(|e| io_err(self.ctx(Op::Put, None), &victim.path, e))?;
                total = total.saturating_sub(victim.size);
                evicted += 1;
            }
            tracing::debug!(backend = %self.name, evicted, total, "evicted least recently used files");
        }
        self.approx_bytes.store(total, Ordering::Relaxed);
        Ok(evicted)
    }

    /// Every entry with its size and last use, sorted by key.
    pub(crate) fn entries_with_use(&self) -> Result<Vec<(KeyInfo, SystemTime)>, Error> {
        let mut all: Vec<(KeyInfo, SystemTime)> = self
            .scan(Op::List)?
            .into_iter()
            .map(|f| {
                (
                    KeyInfo {
                        key: f.key,
                        size: f.size,
                    },
                    f.used,
                )
            })
            .collect();
        all.sort_by_key(|(info, _)| info.key);
        Ok(all)
    }

    /// Every entry file in the directory, and removal of crashed writers' temporary files.
    /// Files and directories of other shapes are left alone.
    pub(crate) fn scan(&self, op: Op) -> Result<Vec<Found>, Error> {
        let ctx = || self.ctx(op, None);
        let entries = layout::entries_dir(&self.root);
        let mut out = Vec::new();
        for fan in read_dir(&entries).map_err(|e| io_err(ctx(), &entries, e))? {
            let Some(fan_name) = fan.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_fan(&fan_name) {
                continue;
            }
            let fan_path = fan.path();
            for file in read_dir(&fan_path).map_err(|e| io_err(ctx(), &fan_path, e))? {
                let Some(name) = file.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let path = file.path();
                if let Some(key) = parse_entry(&fan_name, &name) {
                    // Gone since the directory was read: another process evicted it.
                    let Ok(meta) = fs::symlink_metadata(&path) else {
                        continue;
                    };
                    if !meta.is_file() {
                        continue;
                    }
                    out.push(Found {
                        key,
                        path,
                        size: meta.len(),
                        used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                } else if let Some(pid) = parse_temp(&name)
                    && is_stale_temp(&path, pid)
                {
                    tracing::debug!(path = %path.display(), "removing a crashed writer's temporary file");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(out)
    }
}

fn is_stale_temp(path: &Path, pid: u32) -> bool {
    let old = fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|m| SystemTime::now().duration_since(m).unwrap_or_default() > STALE_TEMP_AGE)
        .unwrap_or(false);
    // On Linux a writer that no longer exists cannot finish its file.
    let dead = cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists();
    old || dead
}

fn read_dir(path: &Path) -> io::Result<Vec<fs::DirEntry>> {
    match fs::read_dir(path) {
        Ok(iter) => Ok(iter.filter_map(Result::ok).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An I/O error whose message names the path.
pub(crate) fn io_err(context: Context, path: &Path, e: io::Error) -> Error {
    Error::Io {
        context,
        source: io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}
