//! Tests of the `open_file` check: a correct file-per-entry backend passes it, and backends
//! with the file bugs a real author could make are caught.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use warmcache_conformance::{Verdict, run_named};
use warmcache_core::backend::{BlockingBackend, page_from_sorted};
use warmcache_core::{Backend, CacheKey, Capabilities, KeyInfo, ListPage, Result, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    None,
    /// Overwrites an entry's file in place (truncate and write) instead of renaming a new one
    /// over it, so a file handed out earlier changes under its reader.
    WritesInPlace,
    /// Hands out a file whose bytes are not `get`'s (a stale sidecar copy).
    StaleFile,
    /// Hands out the right file for values up to 64 KiB, and for larger ones a sidecar copy of
    /// their first 64 KiB.
    LargeFileTruncated,
    /// Claims persistence and writes in place (truncate, then write), as a first version
    /// might: a crash mid-write leaves a torn value.
    PersistentInPlace,
    /// Claims persistence and writes a temporary file renamed over the entry: correct.
    Persistent,
}

#[derive(Debug, Clone)]
struct Files {
    dir: PathBuf,
    defect: Defect,
}

impl Files {
    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.to_hex())
    }

    fn io(e: std::io::Error) -> warmcache_core::Error {
        warmcache_core::Error::io(
            warmcache_core::Context::new("files", warmcache_core::Op::Put),
            e,
        )
    }
}

impl BlockingBackend for Files {
    fn name(&self) -> &str {
        "files"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_local_files(true)
            .with_persistent(matches!(
                self.defect,
                Defect::PersistentInPlace | Defect::Persistent
            ))
    }
    fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        match fs::read(self.path(key)) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(e)),
        }
    }
    fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        let path = self.path(key);
        if matches!(
            self.defect,
            Defect::WritesInPlace | Defect::PersistentInPlace
        ) {
            let mut file = File::create(&path).map_err(Self::io)?;
            return file.write_all(&value).map_err(Self::io);
        }
        let temp = path.with_extension("tmp");
        fs::write(&temp, &value).map_err(Self::io)?;
        fs::rename(&temp, &path).map_err(Self::io)?;
        let sidecar = match self.defect {
            Defect::StaleFile => Some(value.len() / 2),
            Defect::LargeFileTruncated => Some(value.len().min(64 << 10)),
            _ => None,
        };
        if let Some(len) = sidecar {
            fs::write(path.with_extension("file"), &value[..len]).map_err(Self::io)?;
        }
        Ok(())
    }
    fn delete(&self, key: &CacheKey) -> Result<()> {
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Self::io(e)),
            _ => Ok(()),
        }
    }
    fn contains(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.path(key).exists())
    }
    fn clear(&self) -> Result<()> {
        for key in self.keys()? {
            BlockingBackend::delete(self, &key)?;
        }
        Ok(())
    }
    fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        let mut all = Vec::new();
        for key in self.keys()? {
            let size = fs::metadata(self.path(&key)).map_err(Self::io)?.len();
            all.push(KeyInfo { key, size });
        }
        all.sort_by_key(|i| i.key);
        Ok(page_from_sorted(&all, after, limit))
    }
    fn usage(&self) -> Result<Usage> {
        let all = BlockingBackend::list(self, None, usize::MAX)?;
        Ok(Usage {
            entries: all.entries.len() as u64,
            bytes: all.entries.iter().map(|e| e.size).sum(),
        })
    }
    fn open_file(&self, key: &CacheKey) -> Result<Option<File>> {
        let path = match self.defect {
            Defect::StaleFile | Defect::LargeFileTruncated => self.path(key).with_extension("file"),
            _ => self.path(key),
        };
        match File::open(path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io(e)),
        }
    }
}

impl Files {
    fn keys(&self) -> Result<Vec<CacheKey>> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(Self::io)? {
            let name = entry.map_err(Self::io)?.file_name();
            if let Some(key) = name
                .to_str()
                .filter(|n| !n.contains('.'))
                .and_then(|n| n.parse::<CacheKey>().ok())
            {
                keys.push(key);
            }
        }
        Ok(keys)
    }
}

fn harness(defect: Defect) -> impl Fn(&Path) -> Result<Arc<dyn Backend>> + Send + Sync {
    move |dir: &Path| -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(Files {
            dir: dir.to_path_buf(),
            defect,
        }))
    }
}

#[test]
fn a_correct_file_backend_passes_the_open_file_check() {
    let outcome = run_named(&harness(Defect::None), "open_file_matches_get");
    assert_eq!(outcome, Ok(Verdict::Passed));
}

#[test]
fn a_backend_that_writes_files_in_place_is_caught() {
    let outcome = run_named(&harness(Defect::WritesInPlace), "open_file_matches_get");
    let failure = outcome.unwrap_err();
    assert!(failure.0.contains("changed"), "{failure}");
}

#[test]
fn a_backend_whose_file_differs_from_get_is_caught() {
    let outcome = run_named(&harness(Defect::StaleFile), "open_file_matches_get");
    let failure = outcome.unwrap_err();
    assert!(failure.0.contains("differ"), "{failure}");
}

#[test]
fn backends_without_files_or_shrink_are_reported_skipped_not_passed() {
    let outcome = run_named(&harness(Defect::None), "shrink_keeps_recently_used");
    assert!(matches!(outcome, Ok(Verdict::Skipped(_))), "{outcome:?}");
}

#[test]
fn a_backend_whose_file_is_wrong_only_for_large_values_is_caught() {
    let outcome = run_named(&harness(Defect::LargeFileTruncated), "round_trip_sizes");
    let failure = outcome.unwrap_err();
    assert!(failure.0.contains("open_file"), "{failure}");
}

#[test]
fn a_backend_that_declares_no_files_but_hands_them_out_is_told_to_declare_them() {
    let outcome = run_named(&undeclared, "open_file_matches_get");
    let failure = outcome.unwrap_err();
    assert!(failure.0.contains("with_local_files(true)"), "{failure}");
}

/// A file backend that forgot to declare `local_files`.
#[derive(Debug, Clone)]
struct Undeclared(Files);

impl BlockingBackend for Undeclared {
    fn name(&self) -> &str {
        "undeclared"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
    fn get(&self, key: &CacheKey) -> Result<Option<Bytes>> {
        BlockingBackend::get(&self.0, key)
    }
    fn put(&self, key: &CacheKey, value: Bytes) -> Result<()> {
        BlockingBackend::put(&self.0, key, value)
    }
    fn delete(&self, key: &CacheKey) -> Result<()> {
        BlockingBackend::delete(&self.0, key)
    }
    fn contains(&self, key: &CacheKey) -> Result<bool> {
        BlockingBackend::contains(&self.0, key)
    }
    fn clear(&self) -> Result<()> {
        BlockingBackend::clear(&self.0)
    }
    fn list(&self, after: Option<CacheKey>, limit: usize) -> Result<ListPage> {
        BlockingBackend::list(&self.0, after, limit)
    }
    fn usage(&self) -> Result<Usage> {
        BlockingBackend::usage(&self.0)
    }
    fn open_file(&self, key: &CacheKey) -> Result<Option<File>> {
        BlockingBackend::open_file(&self.0, key)
    }
}

fn undeclared(dir: &Path) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(Undeclared(Files {
        dir: dir.to_path_buf(),
        defect: Defect::None,
    })))
}

/// The crash test kills its writer inside puts often enough that a backend writing values in
/// place is caught (the kills are timed by how long the backend's puts take).
#[test]
fn a_persistent_backend_writing_in_place_is_caught_by_the_crash_test() {
    let outcome = warmcache_conformance::crash_test(
        &harness(Defect::PersistentInPlace),
        &warmcache_conformance::test_name(
            module_path!(),
            "a_persistent_backend_writing_in_place_is_caught_by_the_crash_test",
        ),
    );
    let failure = outcome.unwrap_err();
    assert!(failure.0.contains("torn"), "{failure}");
}

#[test]
fn a_persistent_backend_renaming_new_files_passes_the_crash_test() {
    let outcome = warmcache_conformance::crash_test(
        &harness(Defect::Persistent),
        &warmcache_conformance::test_name(
            module_path!(),
            "a_persistent_backend_renaming_new_files_passes_the_crash_test",
        ),
    );
    assert_eq!(outcome, Ok(Verdict::Passed));
}

/// A crash child that panics before its first put is reported with its panic, not as a child
/// that was too slow.
#[test]
fn a_crash_child_that_panics_at_once_is_reported_with_its_panic() {
    let persistent = harness(Defect::Persistent);
    let panics_in_the_child = move |dir: &Path| {
        if std::env::var_os("WARMCACHE_CONFORMANCE_CRASH_CHILD_DIR").is_some() {
            panic!("planted panic: this backend cannot start in the child");
        }
        persistent(dir)
    };
    let failure = warmcache_conformance::crash_test(
        &panics_in_the_child,
        &warmcache_conformance::test_name(
            module_path!(),
            "a_crash_child_that_panics_at_once_is_reported_with_its_panic",
        ),
    )
    .unwrap_err();
    let message = failure.to_string();
    assert!(message.contains("exited by itself"), "{message}");
    assert!(message.contains("planted panic"), "{message}");
}
