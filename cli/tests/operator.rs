//! What an operator relies on: a shared tier without a secret is refused, short secrets are
//! refused, credentials never reach output or disk, maintenance commands fail when a tier did
//! not open, a damaged database is rebuilt, read-only tiers stay unwritten, and precompile
//! never reports success with a tier left unfilled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Env, ok, stderr, stdout};

/// Environment for an S3 tier whose endpoint refuses connections at once.
fn unreachable_s3(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env("AWS_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
}

#[test]
fn a_shared_tier_without_a_secret_is_refused_unless_the_risk_is_accepted() {
    let env = Env::new();
    let m = env.write("m.wat", common::module(1, 2));
    let mut cmd = env.command();
    unreachable_s3(&mut cmd).args(["--tiers", "fs,s3=s3://bucket/p", "precompile"]);
    let out = cmd.arg(&m).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("insecure_shared") && err.contains("secret"),
        "{err}"
    );

    let mut cmd = env.command();
    unreachable_s3(&mut cmd)
        .env("WARMCACHE_INSECURE_SHARED", "true")
        .args(["--tiers", "fs,s3=s3://bucket/p", "precompile"]);
    let out = cmd.arg(&m).output().unwrap();
    assert!(
        !stderr(&out).contains("insecure_shared"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_short_secret_is_refused() {
    let env = Env::new();
    let m = env.write("m.wat", common::module(1, 2));
    let out = env
        .command()
        .env("WARMCACHE_SECRET_ENV", "MY_SECRET")
        .env("MY_SECRET", "hunter2")
        .args(["precompile"])
        .arg(&m)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at least 32"), "{}", stderr(&out));
}

#[test]
fn credentials_in_a_url_never_appear_in_output_or_on_disk() {
    let env = Env::new();
    let m = env.write("m.wat", common::module(2, 2));
    let tiers = "fs,s3=s3://AKIDEXAMPLE:VERYSECRET@bucket/p?token=ALSOSECRET";
    let mut shown = String::new();
    for args in [
        vec!["config"],
        vec!["precompile", m.to_str().unwrap()],
        vec!["stats"],
    ] {
        let mut cmd = env.command();
        unreachable_s3(&mut cmd)
            .env("WARMCACHE_INSECURE_SHARED", "1")
            .env("WARMCACHE_TIERS", tiers)
            .args(&args);
        let out = cmd.output().unwrap();
        shown.push_str(&stdout(&out));
        shown.push_str(&stderr(&out));
    }
    let on_disk = std::fs::read_to_string(env.cache_dir().join("stats.json")).unwrap();
    for text in [&shown, &on_disk] {
        for secret in ["AKIDEXAMPLE", "VERYSECRET", "ALSOSECRET"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }
    assert!(shown.contains("s3://***@bucket/p"), "{shown}");
}

#[test]
fn maintenance_commands_fail_naming_a_tier_that_did_not_open() {
    let env = Env::new();
    std::fs::create_dir_all(env.cache_dir()).unwrap();
    std::fs::write(env.cache_dir().join("cache.redb"), vec![0x5a; 64 << 10]).unwrap();
    let out = env.run(&["--tiers", "redb", "verify"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("cache.redb"), "{}", stderr(&out));
    assert!(
        env.cache_dir().join("cache.redb").exists(),
        "verify moved the damaged database it was asked to check"
    );

    // A file tier whose directory cannot be created.
    let blocker = env.write("blocker", "a file, not a directory");
    let spec = format!("fs={}", blocker.join("files").display());
    for args in [vec!["clear", "--yes"], vec!["gc", "--max-size", "1MiB"]] {
        let out = env
            .command()
            .args(["--tiers", &spec])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("could not be opened"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_damaged_database_is_moved_aside_and_rebuilt() {
    let env = Env::new();
    std::fs::create_dir_all(env.cache_dir()).unwrap();
    let db = env.cache_dir().join("cache.redb");
    std::fs::write(&db, vec![0x5a; 64 << 10]).unwrap();
    let m = env.write("m.wat", common::module(3, 2));
    let out = ok(&env.run(&["--tiers", "redb", "precompile", m.to_str().unwrap()]));
    assert!(out.contains("1 compiled"), "{out}");
    assert!(env.cache_dir().join("cache.redb.corrupt").exists());
    let again = ok(&env.run(&["--tiers", "redb", "precompile", m.to_str().unwrap()]));
    assert!(again.contains("1 already cached"), "{again}");
}

#[test]
fn a_read_only_tier_is_never_written() {
    let env = Env::new();
    let m = env.write("m.wat", common::module(4, 2));
    let shown = ok(&env.run(&["--tiers", "fs+ro", "config"]));
    assert!(shown.contains("read_only=true"), "{shown}");
    ok(&env.run(&["--tiers", "fs+ro", "precompile", m.to_str().unwrap()]));
    let entries = env.cache_dir().join("files").join("entries");
    let written = std::fs::read_dir(&entries).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "a read-only tier was written");
}

#[test]
fn precompile_fills_a_remote_tier_whose_queue_is_smaller_than_the_batch() {
    let env = Env::new();
    let bucket = env.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let config = env.write(
        "warmcache.toml",
        format!(
            "[[tiers]]\nkind = \"fs\"\n\n[[tiers]]\nkind = \"s3\"\nurl = \"file://{}\"\nqueue = 1\n",
            bucket.display()
        ),
    );
    let dir = env.path().join("modules");
    for n in 0..24 {
        env.write(&format!("modules/m{n}.wasm"), common::module(100 + n, 3));
    }
    let out = ok(&env
        .command()
        .arg("--config")
        .arg(&config)
        .arg("precompile")
        .arg(&dir)
        .output()
        .unwrap());
    assert!(out.contains("24 compiled"), "{out}");
    let mut objects = 0;
    for entry in walk(&bucket) {
        objects += usize::from(entry.is_file());
    }
    assert_eq!(objects, 24, "every entry reaches the bucket");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `ls` reads only each entry's trailer: an entry larger than the tier now reads whole (its
/// size was lowered after it was written) is still listed with its kind and producer.
#[test]
fn ls_reads_each_entry_from_its_trailer() {
    use futures::executor::block_on;
    use warmcache_core::{Backend, CacheKey, Compression, Integrity, Origin};

    let env = Env::new();
    let files = env.cache_dir().join("files");
    let backend = warmcache_fs::FsBackend::builder(&files)
        .capacity(1 << 30)
        .open()
        .unwrap();
    let key = CacheKey::pseudo_random(7);
    let origin = Origin::new(
        warmcache_wasmtime::ArtifactKind::Module.envelope_kind(),
        "planted",
    );
    let sealed =
        Integrity::plain().seal_origin(&key, &origin, &vec![1u8; 1 << 20], Compression::None);
    let size = sealed.len() as u64;
    block_on(backend.put(&key, sealed)).unwrap();
    drop(backend);
    let config = env.config_file();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "[[tiers]]\nkind = \"fs\"\nsize = \"64KiB\"\n").unwrap();

    let listing: serde_json::Value =
        serde_json::from_str(&ok(&env.run(&["ls", "--json"]))).unwrap();
    let entries = listing.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listing}");
    assert_eq!(entries[0]["key"], key.to_hex());
    assert_eq!(entries[0]["kind"], "module", "{listing}");
    assert_eq!(entries[0]["producer"], "planted");
    assert_eq!(entries[0]["size"], size);
    // Read whole, the same entry is refused by the tier: verify cannot check it.
    let verify = env.run(&["verify"]);
    assert!(
        stdout(&verify).contains("unreadable"),
        "{}",
        stdout(&verify)
    );
}

/// The keys and sizes of the entries in the file tier `config` names, from `ls --json`.
fn file_tier_entries(env: &Env, config: &std::path::Path) -> Vec<(String, u64)> {
    let out = env.run(&["--config", config.to_str().unwrap(), "ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["tier"].as_str().unwrap().starts_with("fs:"))
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `pin` keeps a module's artifact through `gc` in another process, `unpin` lets it go, and a
/// pin that would take the pinned entries over 80% of the tier is refused, naming the tier.
#[test]
fn pinned_modules_survive_gc_and_a_pin_that_does_not_fit_is_refused() {
    let env = Env::new();
    let plain = env.write("plain.toml", "[[tiers]]\nkind = \"fs\"\n");
    let plain = plain.to_str().unwrap();
    let modules: Vec<String> = (1..=3)
        .map(|seed| {
            let file = env.write(&format!("m{seed}.wat"), common::module(seed, 50));
            file.to_str().unwrap().to_owned()
        })
        .collect();
    let said = ok(&env.run(&["--config", plain, "pin", &modules[0]]));
    assert!(said.contains("m1.wat: pinned in fs:"), "{said}");
    ok(&env.run(&["--config", plain, "precompile", &modules[1], &modules[2]]));
    assert_eq!(file_tier_entries(&env, plain.as_ref()).len(), 3);
    ok(&env.run(&["--config", plain, "gc", "--max-size", "0"]));
    assert_eq!(file_tier_entries(&env, plain.as_ref()).len(), 1);
    let how = stderr(&env.run(&["--config", plain, "run", "-v", &modules[0]]));
    assert!(how.contains("loaded from disk tier fs:"), "{how}");
    let said = ok(&env.run(&["--config", plain, "unpin", &modules[0]]));
    assert!(said.contains("m1.wat: unpinned in fs:"), "{said}");
    ok(&env.run(&["--config", plain, "gc", "--max-size", "0"]));
    assert_eq!(file_tier_entries(&env, plain.as_ref()).len(), 0);

    // A tier of twice one entry: pins may take 1.6 entries' bytes, so one fits, two do not.
    ok(&env.run(&["--config", plain, "precompile", &modules[0]]));
    let size = file_tier_entries(&env, plain.as_ref())[0].1;
    let small = env.write(
        "small.toml",
        format!(
            "[[tiers]]\nkind = \"fs\"\npath = \"small\"\nsize = \"{}\"\n",
            size * 2
        ),
    );
    let small = small.to_str().unwrap();
    ok(&env.run(&["--config", small, "pin", &modules[0]]));
    let out = env.run(&["--config", small, "pin", &modules[1]]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = common::stdout(&out);
    assert!(said.contains("m2.wat: refused in fs:"), "{said}");
    assert!(said.contains("80% of its capacity"), "{said}");
    ok(&env.run(&["--config", small, "gc", "--max-size", "0"]));
    assert_eq!(file_tier_entries(&env, small.as_ref()).len(), 1);
}
