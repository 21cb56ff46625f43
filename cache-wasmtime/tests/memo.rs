//! Input hashes remembered by file identity: an unchanged file is not read or hashed again; a
//! changed, racily recorded or wrongly recorded one is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;
use warmcache_wasmtime::Wasm;

use warmcache_wasmtime::{ContentHash, InputMemo, ModuleCache};

const ANSWER: &str = r#"(module (func (export "answer") (result i32) i32.const 42))"#;
const OTHER: &str = r#"(module (func (export "answer") (result i32) i32.const 43))"#;

fn memo(dir: &Path) -> InputMemo {
    // No racy window: the files here were written a moment before they are remembered.
    InputMemo::open(dir.join("inputs"))
        .unwrap()
        .racy_window(Duration::ZERO)
}

#[test]
fn an_unchanged_file_is_remembered_and_a_changed_one_is_hashed_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.wat");
    std::fs::write(&path, ANSWER).unwrap();
    let memo = memo(dir.path());

    let first = memo.input(&path).unwrap();
    assert!(!first.was_remembered());
    assert_eq!(first.hash(), ContentHash::of(ANSWER.as_bytes()));
    let second = memo.input(&path).unwrap();
    assert!(second.was_remembered(), "an unchanged file was read again");
    assert_eq!(second.hash(), first.hash());

    // Same size, new content: the times change, so the record no longer matches.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, OTHER).unwrap();
    let third = memo.input(&path).unwrap();
    assert!(
        !third.was_remembered(),
        "a changed file's old hash was trusted"
    );
    assert_eq!(third.hash(), ContentHash::of(OTHER.as_bytes()));
}

#[test]
fn a_file_recorded_in_the_moment_it_was_written_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.wat");
    std::fs::write(&path, ANSWER).unwrap();
    // The default window: the file's times are within a second of the record.
    let memo = InputMemo::open(dir.path().join("inputs")).unwrap();
    memo.input(&path).unwrap();
    let again = memo.input(&path).unwrap();
    assert!(
        !again.was_remembered(),
        "a racily recorded hash was trusted"
    );
}

/// Issue 24, item 15: a write through a shared mapping that is already dirty changes a file's
/// content but not its times, so the memo's record goes stale; the bytes handed to the compiler
/// are hashed and must match, so the stale record is caught on the miss and replaced.
#[test]
fn a_stale_record_is_caught_on_a_miss_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.wat");
    std::fs::write(&path, ANSWER).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // SAFETY: the file is this test's own and nothing else maps or truncates it.
    #[allow(unsafe_code)]
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    let at = ANSWER.find("42").unwrap() + 1;
    // Dirty the page first, so that later writes through it change no times.
    map[at] = b'2';
    let memo = memo(dir.path());
    assert_eq!(
        memo.input(&path).unwrap().hash(),
        ContentHash::of(ANSWER.as_bytes())
    );
    map[at] = b'3';
    assert_eq!(std::fs::read_to_string(&path).unwrap(), OTHER);
    let stale = memo.input(&path).unwrap();
    if !stale.was_remembered() {
        eprintln!("skipped: this filesystem updated the file's times on a write through a mapping");
        return;
    }
    assert_eq!(stale.hash(), ContentHash::of(ANSWER.as_bytes()));

    let engine = wasmtime::Engine::default();
    let cache = ModuleCache::builder().build();
    let module = cache
        .get_or_compile(&engine, Wasm::file(&path, Some(&memo)))
        .unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let answer = instance
        .get_typed_func::<(), i32>(&mut store, "answer")
        .unwrap();
    assert_eq!(answer.call(&mut store, ()).unwrap(), 43);
    assert_eq!(cache.stats().computes, 1);
    let again = memo.input(&path).unwrap();
    assert_eq!(
        again.hash(),
        ContentHash::of(OTHER.as_bytes()),
        "the stale record was kept"
    );
}

#[test]
fn a_remembered_file_hits_the_cache_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.wat");
    std::fs::write(&path, ANSWER).unwrap();
    let memo = memo(dir.path());
    let engine = wasmtime::Engine::default();
    let cache = ModuleCache::builder().build();
    cache
        .get_or_compile(&engine, Wasm::file(&path, Some(&memo)))
        .unwrap();
    assert!(memo.input(&path).unwrap().was_remembered());
    cache
        .get_or_compile(&engine, Wasm::file(&path, Some(&memo)))
        .unwrap();
    let stats = cache.stats();
    assert_eq!((stats.computes, stats.live_hits), (1, 1));
    // A missing file is a clear error naming it.
    let missing = dir.path().join("missing.wasm");
    let err = cache
        .get_or_compile(&engine, Wasm::file(&missing, Some(&memo)))
        .unwrap_err();
    assert!(err.to_string().contains("missing.wasm"), "{err}");
}

#[test]
fn planted_symlinks_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("inputs")).unwrap();
    let err = InputMemo::open(dir.path().join("inputs")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");

    // A symlink planted where a record goes is not read as a record.
    use std::os::unix::fs::MetadataExt;
    let path = dir.path().join("m.wat");
    std::fs::write(&path, ANSWER).unwrap();
    let memo = InputMemo::open(dir.path().join("inputs2"))
        .unwrap()
        .racy_window(Duration::ZERO);
    memo.input(&path).unwrap();
    let m = std::fs::metadata(&path).unwrap();
    let record = dir
        .path()
        .join("inputs2")
        .join(format!("{:016x}-{:016x}", m.dev(), m.ino()));
    let planted = elsewhere.path().join("record");
    std::fs::rename(&record, &planted).unwrap();
    std::os::unix::fs::symlink(&planted, &record).unwrap();
    assert!(!memo.input(&path).unwrap().was_remembered());
}

/// Issue 24, item 2: the memo's directory is checked once and then used through its descriptor,
/// so swapping it afterwards for a link to forged records changes nothing; and a record altered
/// or planted without the memo's secret is not believed.
#[test]
fn a_memo_directory_swapped_after_it_was_opened_is_not_followed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let answer = dir.path().join("answer.wat");
    let other = dir.path().join("other.wat");
    std::fs::write(&answer, ANSWER).unwrap();
    std::fs::write(&other, OTHER).unwrap();
    let memo = memo(dir.path());
    memo.input(&answer).unwrap();
    memo.input(&other).unwrap();
    let inputs = dir.path().join("inputs");

    // A forged directory of records, in which `answer.wat`'s identity names `other.wat`'s hash.
    let forged = dir.path().join("forged");
    std::fs::create_dir(&forged).unwrap();
    let name = |path: &Path| {
        let m = std::fs::metadata(path).unwrap();
        format!("{:016x}-{:016x}", m.dev(), m.ino())
    };
    let record = std::fs::read(inputs.join(name(&answer))).unwrap();
    let wrong = ContentHash::of(OTHER.as_bytes()).to_string();
    let right = ContentHash::of(ANSWER.as_bytes()).to_string();
    let text = String::from_utf8_lossy(&record).replace(&right, &wrong);
    std::fs::write(forged.join(name(&answer)), text.as_bytes()).unwrap();
    std::fs::rename(&inputs, dir.path().join("moved-away")).unwrap();
    std::os::unix::fs::symlink(&forged, &inputs).unwrap();

    let input = memo.input(&answer).unwrap();
    assert_eq!(
        input.hash(),
        ContentHash::of(ANSWER.as_bytes()),
        "the swapped-in directory's forged record was believed"
    );
    assert!(input.was_remembered(), "the real record was lost");

    // In place, an altered record is not believed either.
    let fresh = tempfile::tempdir().unwrap();
    let memo = self::memo(fresh.path());
    let path = fresh.path().join("m.wat");
    std::fs::write(&path, ANSWER).unwrap();
    memo.input(&path).unwrap();
    let at = fresh.path().join("inputs").join(name(&path));
    let altered = String::from_utf8_lossy(&std::fs::read(&at).unwrap()).replace(&right, &wrong);
    std::fs::write(&at, altered.as_bytes()).unwrap();
    let input = memo.input(&path).unwrap();
    assert!(!input.was_remembered(), "an altered record was believed");
    assert_eq!(input.hash(), ContentHash::of(ANSWER.as_bytes()));
}
