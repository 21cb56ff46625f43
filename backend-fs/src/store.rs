//! The synchronous file operations: atomic writes, reads, scans and eviction.

use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use warmcache_core::backend::{Eviction, Limits};
use warmcache_core::files::writable_by_others;
use warmcache_core::{CacheKey, Context, Error, KeyInfo, ListPage, MAX_TRAILER_LEN, Op, Usage};

use crate::files::{self, create_new, ensure_dir, open_regular, read_bounded, sync_dir};
use crate::layout::{
    self, entry_path, fan_dir, is_fan, is_temp, parse_entry, pin_path, pins_dir, temp_name,
};
use crate::worth::Worth;

/// A temporary file is only ever removed when nobody holds its lock and it is at least this old:
/// a writer locks its file right after creating it, so this covers that instant, with room for
/// clocks of hosts sharing a network filesystem.
const TEMP_GRACE: Duration = Duration::from_secs(10);
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
    /// The user this process creates files as: only files it owns are handed out for mapping.
    owner: u32,
    /// Why users other than this one can write the directory, if they can: it is then a shared
    /// store, whose entries need a secret to be trusted.
    exposure: Option<String>,
    /// Opened to be read only: nothing in the directory is created, changed or removed (not
    /// even a use recorded), so it works on a directory this user cannot write.
    read_only: bool,
    /// The largest entry this user (or root) wrote here: found at open, raised by every put.
    largest_written: AtomicU64,
    /// The most bytes read from an entry file someone else could have written, at least (see
    /// [`FsBackendBuilder::foreign_read_limit`](crate::FsBackendBuilder::foreign_read_limit)).
    foreign_read_limit: u64,
    worth: Worth,
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
    /// The file's inode: a new value is a new file.
    pub(crate) ino: u64,
    /// Written by this user or root (only they could have).
    pub(crate) own: bool,
}

impl Store {
    /// Opens the tier in `root`; `outer` are the directories above it whose being writable by
    /// others exposes it too (a namespace's parents).
    pub(crate) fn open(
        root: PathBuf,
        outer: Vec<PathBuf>,
        name: String,
        limits: Limits,
        touch_interval: Duration,
        read_only: bool,
        foreign_read_limit: u64,
    ) -> Result<Self, Error> {
        if read_only {
            return Self::open_read_only(root, outer, name, limits, foreign_read_limit);
        }
        let ctx = || Context::new(name.clone(), Op::Open);
        warmcache_core::files::create_cache_dir_all(&root).map_err(|e| io_err(ctx(), &root, e))?;
        let entries = layout::entries_dir(&root);
        ensure_dir(&root, &entries).map_err(|e| io_err(ctx(), &entries, e))?;
        let marker = root.join(layout::MARKER);
        match create_new(&marker) {
            Ok(mut file) => file
                .write_all(b"warmcache file tier, format 1\n")
                .map_err(|e| io_err(ctx(), &marker, e))?,
            // Present already, or a planted link: either way nothing is written through it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(ctx(), &marker, e)),
        }
        // Probe that we can create files here, for an early, clear error, and learn which user
        // our files belong to. A unique name: a planted file or link at a fixed name is refused
        // by the exclusive create, never truncated.
        let probe = entries.join(format!(".probe.{}.{:016x}", std::process::id(), seed()));
        let owner = create_new(&probe)
            .and_then(|file| file.metadata())
            .map(|meta| files::owner_of(&meta))
            .map_err(|e| io_err(ctx(), &entries, e))?;
        let _ = fs::remove_file(&probe);
        let exposure = exposure(&outer, &root);
        if let Some(why) = &exposure {
            tracing::debug!(backend = %name, why, "other users can write this file tier");
        }
        let worth = Worth::new(Eviction::default(), &root, owner);
        let store = Self {
            read_only: false,
            exposure,
            owner,
            root,
            nonce: AtomicU64::new(seed()),
            name,
            limits,
            touch_interval,
            approx_bytes: AtomicU64::new(0),
            evicting: Mutex::new(()),
            largest_written: AtomicU64::new(0),
            foreign_read_limit,
            worth,
        };
        store.measure()?;
        Ok(store)
    }

    /// A directory only read (a prebuilt cache shipped in an image): it must exist with its
    /// `entries/`, and nothing in it is ever written.
    fn open_read_only(
        root: PathBuf,
        outer: Vec<PathBuf>,
        name: String,
        limits: Limits,
        foreign_read_limit: u64,
    ) -> Result<Self, Error> {
        let ctx = || Context::new(name.clone(), Op::Open);
        let entries = layout::entries_dir(&root);
        let meta = fs::symlink_metadata(&entries).map_err(|e| io_err(ctx(), &entries, e))?;
        if !meta.is_dir() {
            return Err(io_err(
                ctx(),
                &entries,
                io::Error::new(io::ErrorKind::InvalidData, "not a directory"),
            ));
        }
        let exposure = exposure(&outer, &root);
        let owner = warmcache_core::files::euid();
        let worth = Worth::new(Eviction::default(), &root, owner);
        let store = Self {
            read_only: true,
            exposure,
            owner,
            root,
            nonce: AtomicU64::new(0),
            name,
            limits,
            touch_interval: Duration::MAX,
            approx_bytes: AtomicU64::new(0),
            evicting: Mutex::new(()),
            largest_written: AtomicU64::new(0),
            foreign_read_limit,
            worth,
        };
        store.measure()?;
        Ok(store)
    }

    /// The store, evicting by `policy`.
    pub(crate) fn evicting_by(mut self, policy: Eviction) -> Self {
        self.worth = Worth::new(policy, &self.root, self.owner);
        self
    }

    /// Learns what the directory holds: its bytes, and the largest entry this user wrote.
    fn measure(&self) -> Result<(), Error> {
        let found = self.scan(Op::Open)?;
        let total: u64 = found.iter().map(|f| f.size).sum();
        let largest = found.iter().filter(|f| f.own).map(|f| f.size).max();
        self.approx_bytes.store(total, Ordering::Relaxed);
        self.largest_written
            .fetch_max(largest.unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    /// Checks, from its trailer alone, that a file someone else could have written holds
    /// exactly the envelope it declares, so that no more is read than an entry of that size.
    fn check_declared(&self, file: &File, len: u64) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let n = len.min(MAX_TRAILER_LEN as u64);
        let mut tail = vec![0; usize::try_from(n).unwrap_or(0)];
        file.read_exact_at(&mut tail, len - n)
            .map_err(|e| format!("unreadable trailer: {e}"))?;
        warmcache_core::inspect_trailer(&tail, len)
            .map(|_| ())
            .map_err(|e| format!("does not hold the envelope it declares ({e})"))
    }

    /// The most bytes read from an entry file: the value limit for this user's own files; for
    /// a file someone else could have written, no more than the largest value this tier wrote
    /// or the configured bound, whichever is larger (a planted huge file costs no memory).
    fn read_limit(&self, meta: &fs::Metadata) -> (u64, bool) {
        let max = self.limits.max_value();
        if files::foreign_writer(meta, self.owner).is_none() {
            return (max, true);
        }
        let largest = self.largest_written.load(Ordering::Relaxed);
        (max.min(largest.max(self.foreign_read_limit)), false)
    }

    /// Refuses `op` on a read-only directory.
    fn writable(&self, op: Op, key: Option<&CacheKey>) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::NotSupported {
                context: self.ctx(op, key),
            });
        }
        Ok(())
    }

    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
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

    pub(crate) fn exposure(&self) -> Option<&str> {
        self.exposure.as_deref()
    }

    fn ctx(&self, op: Op, key: Option<&CacheKey>) -> Context {
        Context::maybe_key(self.name.clone(), op, key)
    }

    /// Writes `value` to a unique temporary file in the entry's directory, syncs it, renames it
    /// over the entry and syncs the directory: readers see the old file or the new one, and
    /// after a crash either, never a part.
    pub(crate) fn put(&self, key: &CacheKey, value: &[u8]) -> Result<(), Error> {
        self.writable(Op::Put, Some(key))?;
        let ctx = || self.ctx(Op::Put, Some(key));
        let size = value.len() as u64;
        self.limits.check(&self.name, key, size)?;
        let dir = fan_dir(&self.root, key);
        self.ensure_fan(&dir).map_err(|e| io_err(ctx(), &dir, e))?;
        let temp = dir.join(temp_name(key, self.nonce.fetch_add(1, Ordering::Relaxed)));
        let written = (|| {
            let mut file = create_new(&temp)?;
            // Held until the file is closed after the rename: the lock is how a cleaner in
            // another process, PID namespace or host tells this write is still in progress.
            file.lock()?;
            file.write_all(value)?;
            self.worth.written(&file);
            file.sync_all()?;
            Ok::<_, io::Error>(file)
        })();
        let _locked = match written {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(io_err(ctx(), &temp, e));
            }
        };
        let target = entry_path(&self.root, key);
        if let Err(e) = fs::rename(&temp, &target) {
            let _ = fs::remove_file(&temp);
            return Err(io_err(ctx(), &target, e));
        }
        sync_dir(&dir).map_err(|e| io_err(ctx(), &dir, e))?;
        self.largest_written.fetch_max(size, Ordering::Relaxed);
        let after = self.approx_bytes.fetch_add(size, Ordering::Relaxed) + size;
        if after > self.limits.capacity() {
            self.evict(Some(key))?;
        }
        Ok(())
    }

    /// Reads the entry into memory: only a regular file, and never more than the largest value
    /// this tier stores.
    /// Creates the fan-out directory `dir` (and `entries/`, if someone removed it), each made
    /// durable in its parent.
    fn ensure_fan(&self, dir: &Path) -> io::Result<()> {
        let entries = layout::entries_dir(&self.root);
        match ensure_dir(&entries, dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ensure_dir(&self.root, &entries)?;
                ensure_dir(&entries, dir)
            }
            other => other,
        }
    }

    pub(crate) fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error> {
        let path = entry_path(&self.root, key);
        let Some((file, meta)) = self.open_entry(key, &path, Op::Get, true)? else {
            return Ok(None);
        };
        let (limit, own) = self.read_limit(&meta);
        // Over the bound: refused below, unread. Under it, not more than the trailer declares.
        if !own && meta.len() <= limit {
            self.check_declared(&file, meta.len())
                .map_err(|detail| Error::Corrupt {
                    context: self.ctx(Op::Get, Some(key)),
                    detail: format!("{}: {detail}; not read", path.display()),
                    source: None,
                })?;
        }
        match read_bounded(&file, meta.len(), limit) {
            Ok(Some(buf)) => Ok(Some(Bytes::from(buf))),
            Ok(None) => Err(Error::Corrupt {
                context: self.ctx(Op::Get, Some(key)),
                detail: if own {
                    format!(
                        "{} holds more than the largest value this tier stores ({limit} bytes); \
                         not read",
                        path.display()
                    )
                } else {
                    format!(
                        "{} could have been written by another user and holds more than the \
                         largest value this tier wrote ({limit} bytes); not read (raise \
                         `foreign_read_limit` if such entries are expected)",
                        path.display()
                    )
                },
                source: None,
            }),
            Err(e) => Err(io_err(self.ctx(Op::Get, Some(key)), &path, e)),
        }
    }

    /// The last `len` bytes of the entry's file, read from its end (the rest is not read).
    /// Inspection, not use: the file's recency is left alone.
    pub(crate) fn get_tail(&self, key: &CacheKey, len: u64) -> Result<Option<Bytes>, Error> {
        use std::os::unix::fs::FileExt;
        let path = entry_path(&self.root, key);
        let Some((file, meta)) = self.open_entry(key, &path, Op::GetTail, false)? else {
            return Ok(None);
        };
        let n = len.min(meta.len());
        let limit = self.limits.max_value();
        if n > limit {
            return Err(Error::Corrupt {
                context: self.ctx(Op::GetTail, Some(key)),
                detail: format!(
                    "{} holds more than the largest value this tier stores ({limit} bytes); \
                     not read",
                    path.display()
                ),
                source: None,
            });
        }
        let mut buf = vec![0; usize::try_from(n).unwrap_or(usize::MAX)];
        file.read_exact_at(&mut buf, meta.len() - n)
            .map_err(|e| io_err(self.ctx(Op::GetTail, Some(key)), &path, e))?;
        Ok(Some(Bytes::from(buf)))
    }

    /// The entry's file, for mapping, when nobody but this user can change it; otherwise
    /// [`Error::NotSupported`], so the caller reads a verified copy through [`get`](Self::get).
    pub(crate) fn open_file(&self, key: &CacheKey) -> Result<Option<File>, Error> {
        let path = entry_path(&self.root, key);
        let Some((file, meta)) = self.open_entry(key, &path, Op::OpenFile, true)? else {
            return Ok(None);
        };
        if let Some(why) = files::unsafe_to_map(&meta, self.owner) {
            tracing::warn!(
                backend = %self.name,
                path = %path.display(),
                why,
                "entry file could be changed after verification; reading a copy instead of mapping it"
            );
            return Err(Error::NotSupported {
                context: self.ctx(Op::OpenFile, Some(key)),
            });
        }
        Ok(Some(file))
    }

    fn open_entry(
        &self,
        key: &CacheKey,
        path: &Path,
        op: Op,
        used: bool,
    ) -> Result<Option<(File, fs::Metadata)>, Error> {
        match open_regular(path) {
            Ok(Some((file, meta))) => {
                if used {
                    self.touch(&file, &meta);
                }
                Ok(Some((file, meta)))
            }
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Corrupt {
                context: self.ctx(op, Some(key)),
                detail: e.to_string(),
                source: None,
            }),
            Err(e) => Err(io_err(self.ctx(op, Some(key)), path, e)),
        }
    }

    /// Records a use by moving the file's modification time to now and counting it in the
    /// file's attributes ([`Worth::used`]), at most once per `touch_interval`: entries are
    /// immutable, so their metadata is free to mean "last used" and "used this often".
    fn touch(&self, file: &File, meta: &fs::Metadata) {
        if self.read_only {
            return;
        }
        let now = SystemTime::now();
        let stale = meta
            .modified()
            .map(|m| now.duration_since(m).unwrap_or_default() >= self.touch_interval)
            .unwrap_or(true);
        if !stale {
            return;
        }
        match file.set_modified(now) {
            Ok(()) => self.worth.used(file),
            Err(e) => tracing::debug!(backend = %self.name, error = %e, "could not record use"),
        }
    }

    pub(crate) fn delete(&self, key: &CacheKey) -> Result<(), Error> {
        self.writable(Op::Delete, Some(key))?;
        let pin = pin_path(&self.root, key);
        remove_if_present(&pin).map_err(|e| io_err(self.ctx(Op::Delete, Some(key)), &pin, e))?;
        let path = entry_path(&self.root, key);
        let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
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
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(self.ctx(Op::Contains, Some(key)), &path, e)),
        }
    }

    pub(crate) fn clear(&self) -> Result<(), Error> {
        self.writable(Op::Clear, None)?;
        let _evicting = self.evicting.lock();
        for found in self.scan(Op::Clear)? {
            remove_if_present(&found.path)
                .map_err(|e| io_err(self.ctx(Op::Clear, None), &found.path, e))?;
        }
        for key in self.pins(Op::Clear)? {
            let pin = pin_path(&self.root, &key);
            remove_if_present(&pin).map_err(|e| io_err(self.ctx(Op::Clear, None), &pin, e))?;
        }
        self.approx_bytes.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Every entry, sorted by key.
    pub(crate) fn usage(&self) -> Result<Usage, Error> {
        let found = self.scan(Op::Usage)?;
        Ok(Usage {
            entries: found.len() as u64,
            bytes: found.iter().map(|f| f.size).sum(),
        })
    }

    /// Deletes entries in eviction order (never `keep`) until the directory holds at most
    /// [`LOW_WATERMARK`] of the capacity, when it holds more than the capacity.
    pub(crate) fn evict(&self, keep: Option<&CacheKey>) -> Result<u64, Error> {
        if self.read_only {
            return Ok(0);
        }
        let capacity = self.limits.capacity();
        let target = (capacity as f64 * LOW_WATERMARK) as u64;
        self.evict_down_to(capacity, target, keep)
    }

    /// Deletes entries in eviction order until the directory holds at most `max_bytes`.
    pub(crate) fn shrink_to(&self, max_bytes: u64) -> Result<u64, Error> {
        self.writable(Op::Shrink, None)?;
        self.evict_down_to(max_bytes, max_bytes, None)
    }

    /// When the directory holds more than `over`, deletes entries in the order of the store's
    /// [`Eviction`] policy (never `keep`) until it holds at most `target`.
    fn evict_down_to(&self, over: u64, target: u64, keep: Option<&CacheKey>) -> Result<u64, Error> {
        let _evicting = self.evicting.lock();
        let found = self.scan(Op::Put)?;
        let mut total: u64 = found.iter().map(|f| f.size).sum();
        let mut evicted = 0;
        if total > over {
            let pins = self.pins(Op::Put)?;
            let ranked = self.worth.ranked(found);
            let evictable = |f: &&(f64, Found)| Some(&f.1.key) != keep && !pins.contains(&f.1.key);
            for (rank, victim) in ranked.iter().filter(evictable) {
                if total <= target {
                    break;
                }
                remove_if_present(&victim.path)
                    .map_err(|e| io_err(self.ctx(Op::Put, None), &victim.path, e))?;
                self.worth.evicted(*rank);
                total = total.saturating_sub(victim.size);
                evicted += 1;
            }
            self.worth.save();
            tracing::debug!(backend = %self.name, evicted, total, policy = %self.worth.policy(), "evicted files");
        }
        self.approx_bytes.store(total, Ordering::Relaxed);
        Ok(evicted)
    }

    /// Pins or unpins `key`'s entry (see `Backend::pin`): an empty file `pins/<key>`, created
    /// under the eviction lock after the room for it was checked.
    pub(crate) fn pin(&self, key: &CacheKey, pinned: bool) -> Result<bool, Error> {
        self.writable(Op::Pin, Some(key))?;
        let ctx = || self.ctx(Op::Pin, Some(key));
        let _evicting = self.evicting.lock();
        let size = self
            .entry_size(key)
            .map_err(|e| io_err(ctx(), &self.root, e))?;
        let pin = pin_path(&self.root, key);
        if !pinned {
            // A pin left by an entry another process evicted meanwhile goes too.
            remove_if_present(&pin).map_err(|e| io_err(ctx(), &pin, e))?;
            return Ok(size.is_some());
        }
        let Some(size) = size else {
            return Ok(false);
        };
        let dir = pins_dir(&self.root);
        ensure_dir(&self.root, &dir).map_err(|e| io_err(ctx(), &dir, e))?;
        // Between processes too: one pin's room check and creation at a time.
        let _pinning = pin_lock(&dir).map_err(|e| io_err(ctx(), &dir, e))?;
        let pins = self.pins(Op::Pin)?;
        if pins.contains(key) {
            return Ok(true);
        }
        let mut total = size;
        for other in &pins {
            let other_size = self
                .entry_size(other)
                .map_err(|e| io_err(ctx(), &self.root, e))?;
            total = total.saturating_add(other_size.unwrap_or(0));
        }
        let limit = warmcache_core::backend::max_pinned(self.limits.capacity());
        if total > limit {
            return Err(Error::Capacity {
                context: ctx(),
                size: total,
                limit,
            });
        }
        match create_new(&pin) {
            Ok(_) => sync_dir(&dir).map_err(|e| io_err(ctx(), &dir, e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(ctx(), &pin, e)),
        }
        Ok(true)
    }

    /// The size of `key`'s entry file, if there is one.
    fn entry_size(&self, key: &CacheKey) -> io::Result<Option<u64>> {
        match fs::symlink_metadata(entry_path(&self.root, key)) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The pinned keys: empty regular files `pins/<key>` this user (or root) created. A pin
    /// another user planted in a directory they can write is not obeyed: it would keep their
    /// entries from eviction.
    fn pins(&self, op: Op) -> Result<std::collections::HashSet<CacheKey>, Error> {
        let dir = pins_dir(&self.root);
        let mut pins = std::collections::HashSet::new();
        let listed = match read_dir(&dir) {
            Ok(listed) => listed,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(pins),
            Err(e) => return Err(io_err(self.ctx(op, None), &dir, e)),
        };
        for item in listed {
            let name = item.file_name();
            let Some(key) = name.to_str().and_then(|n| n.parse::<CacheKey>().ok()) else {
                continue;
            };
            let Ok(meta) = fs::symlink_metadata(item.path()) else {
                continue;
            };
            let owner = files::owner_of(&meta);
            if meta.is_file() && (owner == self.owner || owner == 0) {
                pins.insert(key);
            }
        }
        Ok(pins)
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
        let mut out = Vec::new();
        for (fan_name, fan_path) in self.fans(op)? {
            out.extend(self.scan_fan(op, &fan_name, &fan_path)?);
        }
        Ok(out)
    }

    /// At most `limit` entries after `after`, in key order, reading only the fan-out
    /// directories the page covers (from `after`'s on), so listing every page costs about one
    /// scan in all rather than one per page.
    pub(crate) fn list_page(
        &self,
        after: Option<CacheKey>,
        limit: usize,
    ) -> Result<ListPage, Error> {
        let limit = limit.max(1);
        let first = after.map_or_else(String::new, |k| k.to_hex()[..2].to_owned());
        let mut fans = self.fans(Op::List)?;
        fans.retain(|(name, _)| *name >= first);
        fans.sort();
        let mut entries: Vec<KeyInfo> = Vec::new();
        for (fan_name, fan_path) in fans {
            let mut found: Vec<KeyInfo> = self
                .scan_fan(Op::List, &fan_name, &fan_path)?
                .into_iter()
                .filter(|f| after.is_none_or(|a| f.key > a))
                .map(|f| KeyInfo {
                    key: f.key,
                    size: f.size,
                })
                .collect();
            found.sort_by_key(|e| e.key);
            entries.extend(found);
            if entries.len() >= limit {
                break;
            }
        }
        // Only a full page can have more after it.
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more || entries.len() == limit {
            entries.last().map(|e| e.key)
        } else {
            None
        };
        Ok(ListPage { entries, next })
    }

    /// The fan-out directories: (name, path), links and other shapes skipped.
    fn fans(&self, op: Op) -> Result<Vec<(String, PathBuf)>, Error> {
        let entries = layout::entries_dir(&self.root);
        let mut fans = Vec::new();
        for fan in read_dir(&entries).map_err(|e| io_err(self.ctx(op, None), &entries, e))? {
            let Some(fan_name) = fan.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // Never descend through a link: eviction and `clear` must not reach outside.
            if !is_fan(&fan_name) || !fan.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            fans.push((fan_name, fan.path()));
        }
        Ok(fans)
    }

    /// The entry files of one fan-out directory, removing crashed writers' temporary files.
    fn scan_fan(&self, op: Op, fan_name: &str, fan_path: &Path) -> Result<Vec<Found>, Error> {
        let mut out = Vec::new();
        for file in read_dir(fan_path).map_err(|e| io_err(self.ctx(op, None), fan_path, e))? {
            let Some(name) = file.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let path = file.path();
            if let Some(key) = parse_entry(fan_name, &name) {
                // Gone since the directory was read: another process evicted it.
                let Ok(meta) = fs::symlink_metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                out.push(Found {
                    key,
                    path,
                    size: meta.len(),
                    used,
                    ino: std::os::unix::fs::MetadataExt::ino(&meta),
                    own: files::foreign_writer(&meta, self.owner).is_none(),
                });
            } else if !self.read_only && is_temp(&name) && is_abandoned_temp(&path) {
                tracing::debug!(path = %path.display(), "removing a crashed writer's temporary file");
                let _ = fs::remove_file(&path);
            }
        }
        Ok(out)
    }
}

/// Whether a temporary file's writer is gone: nobody holds its lock (a writer holds it from
/// creation until it closes the file), and it is older than [`TEMP_GRACE`]. Works across PID
/// namespaces and, where the filesystem supports locks, across hosts.
/// The lock file `pins/.lock`, locked exclusively (released when dropped). Its name is no
/// key's, so `pins` never takes it for a pin.
fn pin_lock(dir: &Path) -> io::Result<File> {
    let path = dir.join(".lock");
    let file = match create_new(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => files::open_regular(&path)?
            .map(|(file, _)| file)
            .ok_or_else(|| io::Error::other("the pin lock vanished while being opened"))?,
        Err(e) => return Err(e),
    };
    file.lock()?;
    Ok(file)
}

fn is_abandoned_temp(path: &Path) -> bool {
    let Ok(Some((file, meta))) = open_regular(path) else {
        return false;
    };
    let old = meta
        .modified()
        .map(|m| SystemTime::now().duration_since(m).unwrap_or_default() > TEMP_GRACE)
        .unwrap_or(false);
    old && match file.try_lock() {
        Ok(()) => true,
        Err(TryLockError::WouldBlock) => false,
        Err(TryLockError::Error(e)) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot test a temporary file's lock; leaving it");
            false
        }
    }
}

/// Why others can write the tier: through `root`, its `entries/`, or a directory in `outer`.
fn exposure(outer: &[PathBuf], root: &Path) -> Option<String> {
    let entries = layout::entries_dir(root);
    outer
        .iter()
        .map(PathBuf::as_path)
        .chain([root, entries.as_path()])
        .find_map(|dir| writable_by_others(dir).ok().flatten())
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
