//! The trust rule, tried as a hostile co-tenant would: two real users (a victim and a
//! co-tenant in one group) sharing a group-writable cache directory (`chmod 2775`, umask 002),
//! each running the real binary as its own uid. No process runs code that it did not compile or
//! cannot authenticate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::Path;

use common::users::{self, COTENANT, Users, VICTIM};
use common::{Env, exits_with, ok, stderr, stdout};
use warmcache_core::bytes::Bytes;
use warmcache_core::{CacheKey, Compression, Integrity, Origin};

/// Re-seals the artifact in the entry file `theirs` under the key of the entry file `victims`,
/// with a plain tag: what anyone can compute.
fn reseal(theirs: &Path, victims: &Path) -> Vec<u8> {
    let stored = Bytes::from(std::fs::read(theirs).unwrap());
    let meta = warmcache_core::inspect(&stored).unwrap();
    let entry = Integrity::plain().open(&meta.key, &stored).unwrap();
    let target = warmcache_core::inspect(&std::fs::read(victims).unwrap())
        .unwrap()
        .key;
    let origin = Origin::new(meta.kind, meta.producer.clone()).compute_ms(meta.compute_ms);
    Integrity::plain()
        .seal_origin(&target, &origin, entry.payload(), Compression::None)
        .to_vec()
}

/// Replaces the victim's only entry in `files` with the co-tenant's artifact for a module that
/// exits 42, as the co-tenant: a rename inside the group-writable fan-out directory.
fn plant_cotenants_code(users: &Users, files: &Path) -> CacheKey {
    let mine = users.write("cotenant.wat", exits_with(42));
    let own_cache = users.home(COTENANT).join("own-cache");
    let out = users.run(COTENANT, &own_cache, &["run", mine.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    let theirs = users::entry_files(&own_cache.join("files"));
    let victims = users::entry_files(files);
    assert_eq!(
        (theirs.len(), victims.len()),
        (1, 1),
        "{theirs:?} {victims:?}"
    );
    let forged = users.write("forged", reseal(&theirs[0], &victims[0]));
    let target = &victims[0];
    let temp = target.with_file_name(".planted");
    let out = users.shell(
        COTENANT,
        &format!(
            "cp {} {} && mv -f {} {}",
            forged.display(),
            temp.display(),
            temp.display(),
            target.display()
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(users::owner(target), COTENANT);
    warmcache_core::inspect(&std::fs::read(target).unwrap())
        .unwrap()
        .key
}

/// Issue 24, item 1: in plain mode a co-tenant re-seals its own artifact under the victim's key
/// and renames it over the victim's entry. The victim must not run it: an entry file owned by
/// anyone else is a miss, never read as a verified copy.
#[test]
fn plain_mode_never_runs_an_entry_another_user_wrote() {
    let Some(users) = Users::new() else { return };
    let shared = users.shared_dir("shared");
    let module = users.write("victim.wat", exits_with(7));
    let module = module.to_str().unwrap();
    // The victim accepts the shared directory without a secret on purpose.
    let victim = |args: &[&str]| {
        users
            .command(VICTIM)
            .env("WARMCACHE_CACHE_DIR", &shared)
            .env("WARMCACHE_INSECURE_SHARED", "true")
            .args(args)
            .output()
            .unwrap()
    };
    let first = victim(&["run", module]);
    assert_eq!(first.status.code(), Some(7), "{}", stderr(&first));

    plant_cotenants_code(&users, &shared.join("files"));

    for _ in 0..2 {
        let again = victim(&["run", "-v", module]);
        assert_eq!(
            again.status.code(),
            Some(7),
            "the victim ran the co-tenant's code\nstdout:\n{}\nstderr:\n{}",
            stdout(&again),
            stderr(&again)
        );
    }
}

/// Issue 24, the rule's second half: a cache directory that others can write requires a secret,
/// as ssh's StrictModes refuses a `~/.ssh` others can write. The CLI refuses it, saying what to
/// do, unless `insecure_shared` is set.
#[test]
fn a_cache_directory_others_can_write_needs_a_secret() {
    let Some(users) = Users::new() else { return };
    let shared = users.shared_dir("shared");
    let module = users.write("victim.wat", exits_with(7));
    let out = users.run(VICTIM, &shared, &["run", module.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("writable by"), "{err}");
    assert!(err.contains("secret_env"), "{err}");
    assert!(err.contains("insecure_shared"), "{err}");
    assert!(
        users::entry_files(&shared.join("files")).is_empty(),
        "nothing is written to a refused directory"
    );

    // With a secret, the shared directory is used.
    let out = users
        .command(VICTIM)
        .env("WARMCACHE_CACHE_DIR", &shared)
        .env("WARMCACHE_SECRET_ENV", "FLEET")
        .env("FLEET", "a shared secret of at least 32 bytes, for tests")
        .args(["run", module.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(users::entry_files(&shared.join("files")).len(), 1);

    // A private directory needs nothing.
    let private = users.home(VICTIM).join("private");
    let out = users.run(VICTIM, &private, &["run", module.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
}

/// Issue 24, item 4: `clear` and `gc` never write, evict or delete in a read-only tier (an
/// `s3+ro` fleet bucket, a previous secret's namespace, a prebuilt directory).
#[test]
fn clear_and_gc_never_touch_a_read_only_tier() {
    let env = Env::new();
    let module = env.write("m.wat", exits_with(3));
    let module = module.to_str().unwrap();
    let prebuilt = env.path().join("prebuilt");
    let filled = env.run(&[
        "--tiers",
        &format!("fs={}", prebuilt.display()),
        "run",
        module,
    ]);
    assert_eq!(filled.status.code(), Some(3), "{}", stderr(&filled));
    assert_eq!(users::entry_files(&prebuilt).len(), 1);

    let tiers = format!("fs,fs+ro={}", prebuilt.display());
    let cleared = ok(&env.run(&["--tiers", &tiers, "clear", "--yes"]));
    assert!(cleared.contains("skipped (read-only)"), "{cleared}");
    assert_eq!(
        users::entry_files(&prebuilt).len(),
        1,
        "clear emptied a read-only tier"
    );
    let collected = ok(&env.run(&["--tiers", &tiers, "gc", "--max-size", "0"]));
    assert!(collected.contains("skipped (read-only)"), "{collected}");
    assert_eq!(
        users::entry_files(&prebuilt).len(),
        1,
        "gc evicted from a read-only tier"
    );
}

/// Issue 24, item 13: a read-only file tier works on a directory this user cannot write (a
/// prebuilt cache shipped in an image, owned by root): it is read, never skipped.
#[test]
fn a_read_only_file_tier_needs_no_write_permission() {
    let Some(users) = Users::new() else { return };
    let module = users.write("m.wat", exits_with(5));
    let module = module.to_str().unwrap();
    let prebuilt = users.path().join("prebuilt");
    let image_builder = users.home(VICTIM).join("unused");
    let filled = users
        .command(0)
        .env("WARMCACHE_CACHE_DIR", users.path().join("root-cache"))
        .args([
            "--tiers",
            &format!("fs={}", prebuilt.display()),
            "run",
            module,
        ])
        .output()
        .unwrap();
    assert_eq!(filled.status.code(), Some(5), "{}", stderr(&filled));
    // As an image ships it: root's, readable by everyone, writable by nobody else.
    let fixed = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "chown -R 0:0 {0} && find {0} -type d -exec chmod 755 {{}} + && find {0} -type f -exec chmod 644 {{}} +",
            prebuilt.display()
        ))
        .status()
        .unwrap();
    assert!(fixed.success());

    let tiers = format!("fs,fs+ro={}", prebuilt.display());
    let out = users.run(
        VICTIM,
        &image_builder,
        &["--tiers", &tiers, "run", "-v", module],
    );
    let how = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{how}");
    assert!(!how.contains("skipping tier"), "{how}");
    assert!(
        !how.contains("compiled in"),
        "compiled instead of loading: {how}"
    );
    assert!(how.contains("prebuilt"), "{how}");
}

/// Issue 24, item 5: a lock file a co-tenant planted (and holds) in a shared directory does not
/// make the victim wait the coordination wait for a computation nobody does: only locks owned by
/// this user are honoured.
#[test]
fn a_cotenants_lock_is_not_waited_on() {
    let Some(users) = Users::new() else { return };
    let shared = users.shared_dir("shared");
    let module = users.write("victim.wat", exits_with(9));
    let module = module.to_str().unwrap();
    let secret = "a shared secret of at least 32 bytes, for tests";
    let victim = |args: &[&str]| {
        users
            .command(VICTIM)
            .env("WARMCACHE_CACHE_DIR", &shared)
            .env("WARMCACHE_SECRET_ENV", "FLEET")
            .env("FLEET", secret)
            .env("WARMCACHE_COORDINATION_WAIT_MS", "20000")
            .args(args)
            .output()
            .unwrap()
    };
    // The key, learned from a scratch cache (keys do not depend on the secret).
    let scratch = users.home(VICTIM).join("scratch");
    let out = users.run(VICTIM, &scratch, &["run", module]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let key = users::entry_files(&scratch.join("files"))[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();

    let locks = shared.join("files").join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    for dir in [shared.join("files"), locks.clone()] {
        std::os::unix::fs::chown(&dir, Some(VICTIM), Some(users::GROUP)).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o2775))
            .unwrap();
    }
    let lock = locks.join(&key);
    // With umask 002, as the shared set-up has it: the victim can open the lock file.
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask 002; exec flock {} sleep 60", lock.display()))
        .uid(COTENANT)
        .gid(users::GROUP)
        .spawn()
        .unwrap();
    while !lock.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = victim(&["run", module]);
    let stats = victim(&["stats", "--json"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let stats: serde_json::Value = serde_json::from_str(&stdout(&stats)).unwrap();
    let fs = stats["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "fs")
        .unwrap();
    assert_eq!(fs["lease_waits"], 0, "{stats}");
    assert_eq!(fs["lease_timeouts"], 0, "{stats}");
}

/// Issue 24, item 14 (the terminal half): `ls` prints what an entry says about itself, which
/// whoever wrote the entry chose; control characters and terminal escapes are escaped.
#[test]
fn ls_never_sends_an_entrys_escapes_to_the_terminal() {
    use warmcache_core::Backend;
    let env = Env::new();
    let files = warmcache_fs::FsBackend::open(env.cache_dir().join("files")).unwrap();
    let key = CacheKey::from_bytes([7; 32]);
    let producer = "wasmtime\u{1b}]0;owned\u{7}\u{1b}[2J\r\n";
    let sealed = Integrity::plain().seal(&key, 1, producer, b"payload");
    futures::executor::block_on(files.put(&key, sealed)).unwrap();
    let listed = ok(&env.run(&["ls"]));
    assert!(listed.contains("wasmtime"), "{listed}");
    assert!(
        !listed.chars().any(|c| c.is_control() && c != '\n'),
        "control characters reached the terminal: {listed:?}"
    );
}

/// Issue 24, item 10: users (or nodes) with different secrets on one directory keep their
/// entries in a namespace per key id, as in a bucket: neither deletes the other's entries, so
/// each compiles a module once, not on every other run.
#[test]
fn different_secrets_on_one_directory_never_destroy_each_others_entries() {
    let Some(users) = Users::new() else { return };
    let shared = users.shared_dir("shared");
    let module = users.write("m.wat", exits_with(9));
    let secrets = [
        (VICTIM, "the victim's secret, at least 32 bytes long"),
        (COTENANT, "the co-tenant's secret, also 32 bytes or more"),
    ];
    let mut compiles = 0;
    for round in 0..4 {
        for (uid, secret) in secrets {
            let out = users
                .command(uid)
                .env("WARMCACHE_CACHE_DIR", &shared)
                .env("WARMCACHE_SECRET_ENV", "MINE")
                .env("MINE", secret)
                .args(["run", "-v", module.to_str().unwrap()])
                .output()
                .unwrap();
            let how = stderr(&out);
            assert_eq!(out.status.code(), Some(9), "round {round}: {how}");
            compiles += usize::from(how.contains("compiled in"));
        }
    }
    assert_eq!(compiles, 2, "each secret's user compiles once");
}
