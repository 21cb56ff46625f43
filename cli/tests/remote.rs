//! The CLI with a remote tier: a second machine warm-starts from the bucket, and an unreachable
//! remote only costs a warning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use crate::s3;

use common::{Env, ok, stderr};
use s3::Server as _;

fn remote_config(env: &Env, endpoint: &str, bucket: &str) -> std::path::PathBuf {
    env.write(
        "remote.toml",
        format!(
            "[[tiers]]\nkind = \"memory\"\n\n[[tiers]]\nkind = \"fs\"\n\n[[tiers]]\nkind = \"s3\"\nurl = \"s3://{bucket}/modules\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow_http = true\n"
        ),
    )
}

fn with_credentials(env: &Env) -> std::process::Command {
    let mut cmd = env.command();
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
        .env(
            "WARMCACHE_SECRET",
            "a shared secret of at least thirty-two bytes",
        );
    cmd
}

/// A machine of its own (empty local tiers) over a shared bucket, with the secret in
/// `secret_var`.
struct Machine {
    env: Env,
    config: std::path::PathBuf,
    secret_var: &'static str,
}

impl Machine {
    fn new(moto: &s3::Moto, bucket: &str, secret_var: &'static str) -> Self {
        let env = Env::new();
        let config = remote_config(&env, &moto.endpoint(), bucket);
        Self {
            env,
            config,
            secret_var,
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        with_credentials(&self.env)
            .env(
                "OTHER_SECRET",
                "not the secret the bucket was written with!",
            )
            .args(["--config", self.config.to_str().unwrap()])
            .args(["--secret-env", self.secret_var])
            .args(args)
            .output()
            .unwrap()
    }
}

#[test]
fn a_second_machine_warm_starts_from_the_bucket() {
    let (moto, bucket) = new_bucket("cli");
    let hello = common::hello();
    let hello = hello.to_str().unwrap();

    let first = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let out = first.run(&["run", "-v", hello]);
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    assert!(stderr(&out).contains("compiled"), "{}", stderr(&out));

    // Another machine: empty local tiers, same bucket and secret.
    let second = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let out = second.run(&["run", "-v", hello]);
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    let how = stderr(&out);
    assert!(how.contains("loaded from remote tier s3:s3://"), "{how}");
    // Promoted into the local file tier.
    let out = second.run(&["run", "-v", hello]);
    assert!(
        stderr(&out).contains("loaded from disk tier fs:"),
        "{}",
        stderr(&out)
    );

    // Without the secret the entries do not verify: refused, compiled again, never loaded...
    let third = Machine::new(moto, &bucket, "OTHER_SECRET");
    let out = third.run(&["run", "-v", hello]);
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    assert!(stderr(&out).contains("compiled"), "{}", stderr(&out));
    // ... and its `verify --remove` (with its wrong secret) does not empty the fleet's bucket.
    let out = third.run(&["verify", "--remove"]);
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        stderr(&out)
    );

    // A new machine of the fleet still warm-starts from the bucket.
    let fourth = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let out = fourth.run(&["run", "-v", hello]);
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    let how = stderr(&out);
    assert!(how.contains("loaded from remote tier s3:s3://"), "{how}");
}

/// The `http` tier kind: two machines share a WebDAV server (nginx) as they share a bucket.
#[test]
fn a_second_machine_warm_starts_from_a_webdav_server() {
    let server = s3::webdav::shared();
    let collection = s3::unique_bucket("cli-dav");
    server.create_bucket(&collection);
    let url = format!("{}/{collection}/modules", server.endpoint());
    let machine = || {
        let env = Env::new();
        let config = env.write(
            "dav.toml",
            format!("[[tiers]]\nkind = \"fs\"\n\n[[tiers]]\nkind = \"http\"\nurl = \"{url}\"\n"),
        );
        (env, config)
    };
    let hello = common::hello();
    let run = |(env, config): &(Env, std::path::PathBuf)| {
        with_credentials(env)
            .args(["--config", config.to_str().unwrap()])
            .args(["--secret-env", "WARMCACHE_SECRET", "run", "-v"])
            .arg(&hello)
            .output()
            .unwrap()
    };
    let first = machine();
    let out = run(&first);
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    assert!(stderr(&out).contains("compiled"), "{}", stderr(&out));

    let second = machine();
    let out = run(&second);
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    let how = stderr(&out);
    assert!(
        how.contains("loaded from remote tier http:http://"),
        "{how}"
    );
}

#[test]
fn an_unreachable_remote_costs_a_warning_not_the_run() {
    let env = Env::new();
    // Nothing listens on port 9 of loopback.
    let config = remote_config(&env, "http://127.0.0.1:9", "nowhere");
    let out = with_credentials(&env)
        .args(["--config", config.to_str().unwrap()])
        .args(["--secret-env", "WARMCACHE_SECRET"])
        .args(["run", common::hello().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    let warning = stderr(&out);
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("s3:s3://nowhere/modules"), "{warning}");
}

#[test]
fn a_missing_secret_variable_is_refused() {
    let env = Env::new();
    let out = env.run(&["--secret-env", "NO_SUCH_SECRET_VAR", "stats"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("NO_SUCH_SECRET_VAR is not set"),
        "{}",
        stderr(&out)
    );
}

// Signed entries: producers sign, consumers hold public keys only.

/// Where a fleet's bucket is: moto, or a directory through object_store's `file://`.
enum Bucket {
    Moto { endpoint: String, bucket: String },
    Dir(tempfile::TempDir),
}

impl Bucket {
    fn moto() -> Self {
        let moto = s3::shared();
        let bucket = s3::unique_bucket("signed");
        s3::create_bucket(moto.port(), &bucket);
        Bucket::Moto {
            endpoint: moto.endpoint(),
            bucket,
        }
    }

    fn dir() -> Self {
        Bucket::Dir(tempfile::tempdir().unwrap())
    }

    /// The `[[tiers]]` table of this bucket.
    fn tier(&self) -> String {
        match self {
            Bucket::Moto { endpoint, bucket } => format!(
                "[[tiers]]\nkind = \"s3\"\nurl = \"s3://{bucket}/modules\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow_http = true\n"
            ),
            Bucket::Dir(dir) => format!(
                "[[tiers]]\nkind = \"s3\"\nurl = \"file://{}\"\n",
                dir.path().display()
            ),
        }
    }

    /// The signed namespace, as anyone with write access to the bucket sees it.
    fn signed(&self) -> warmcache_s3::S3Backend {
        match self {
            Bucket::Moto { endpoint, bucket } => s3::backend(endpoint, bucket, "modules/signed"),
            Bucket::Dir(dir) => {
                warmcache_s3::S3Backend::builder(format!("file://{}/signed", dir.path().display()))
                    .build()
                    .unwrap()
            }
        }
    }

    fn keys(&self) -> Vec<warmcache_core::CacheKey> {
        use warmcache_core::BackendExt;
        let mut keys: Vec<_> = futures::executor::block_on(self.signed().list_all())
            .unwrap()
            .into_iter()
            .map(|info| info.key)
            .collect();
        keys.sort();
        keys
    }
}

/// A host of the fleet: its own cache directory, the bucket below a file tier, and `extra`
/// settings.
struct Host {
    env: Env,
    config: std::path::PathBuf,
}

impl Host {
    fn new(bucket: &Bucket, extra: &str) -> Self {
        let env = Env::new();
        let config = env.write(
            "host.toml",
            format!(
                "secret_env = \"LOCAL_SECRET\"\n{extra}\n[[tiers]]\nkind = \"fs\"\n\n{}",
                bucket.tier()
            ),
        );
        Self { env, config }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = with_credentials(&self.env);
        cmd.env("LOCAL_SECRET", "this host's own local secret, 32 bytes+")
            .args(["--config", self.config.to_str().unwrap()])
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }
}

/// Runs `module` on `host` with `-v`; asserts it ran (exit `code`) and returns how it was loaded.
fn run_module(host: &Host, module: &std::path::Path, code: i32) -> String {
    let out = host.run(&["run", "-v", module.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    stderr(&out)
}

fn producer_and_modules(bucket: &Bucket) -> (Host, String, Vec<std::path::PathBuf>) {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("producer.pem");
    let setup = Env::new();
    let out = setup.run(&["keygen", key_file.to_str().unwrap()]);
    let printed = ok(&out);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // keygen never replaces a key.
    assert!(
        !setup
            .run(&["keygen", key_file.to_str().unwrap()])
            .status
            .success()
    );
    let trusted = printed
        .lines()
        .find_map(|l| l.strip_prefix("consumers:   trusted_keys = [\""))
        .and_then(|l| l.strip_suffix("\"]"))
        .unwrap()
        .to_owned();
    // The key file moves into the producer's home (kept alive with it).
    let producer = Host::new(
        bucket,
        &format!("signing_key_file = \"{}\"\n", key_file.display()),
    );
    let key_file_kept = producer
        .env
        .write("producer.pem", std::fs::read(&key_file).unwrap());
    std::fs::set_permissions(&key_file_kept, std::fs::Permissions::from_mode(0o600)).unwrap();
    let producer = Host {
        config: producer.env.write(
            "host.toml",
            format!(
                "secret_env = \"LOCAL_SECRET\"\nsigning_key_file = \"{}\"\n[[tiers]]\nkind = \"fs\"\n\n{}",
                key_file_kept.display(),
                bucket.tier()
            ),
        ),
        env: producer.env,
    };
    let modules: Vec<_> = (10..14)
        .map(|code| {
            producer
                .env
                .write(&format!("m{code}.wat"), common::exits_with(code))
        })
        .collect();
    (producer, trusted, modules)
}

fn a_fleet_loads_only_what_its_producer_signed(bucket: &Bucket) {
    let (producer, trusted, modules) = producer_and_modules(bucket);
    // One at a time, to learn each module's key from what appears in the bucket.
    let mut key_of = Vec::new();
    for module in &modules {
        let before = bucket.keys();
        ok(&producer.run(&["precompile", module.to_str().unwrap()]));
        let new: Vec<_> = bucket
            .keys()
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect();
        assert_eq!(new.len(), 1);
        key_of.push(new[0]);
    }
    let filled = bucket.keys();
    assert_eq!(filled.len(), modules.len());
    let signed = bucket.signed();
    let recorded_inputs = |key| {
        let entry = futures::executor::block_on(warmcache_core::Backend::get(&signed, key))
            .unwrap()
            .unwrap();
        warmcache_core::inspect(&entry).unwrap().inputs
    };
    let victim_inputs = recorded_inputs(&key_of[0]);
    let module_args: Vec<&str> = modules.iter().map(|m| m.to_str().unwrap()).collect();
    let audit = |host: &Host, extra: &[&str]| {
        let mut args = vec!["audit", "--tier", "s3"];
        args.extend(extra);
        args.extend(&module_args);
        host.run(&args)
    };
    let report = ok(&audit(&producer, &[]));
    assert!(
        report.contains("audited 4 of 4 entries found for 4 files in 1 tier(s): 0 bad"),
        "{report}"
    );
    let report = ok(&audit(&producer, &["--sample", "50"]));
    assert!(report.contains("audited 2 of 4 entries"), "{report}");
    // `ls` names each entry's signer (as claimed; it lists without verifying).
    let signer_id = trusted.split('=').next().unwrap();
    let listing = ok(&producer.run(&["ls"]));
    let signed_lines = listing
        .lines()
        .filter(|l| l.contains(&format!("signed by {signer_id}")))
        .count();
    assert_eq!(signed_lines, 8, "{listing}"); // four modules, in the file tier and the bucket

    // Four consumers with only the public key, at once: every module loads from the bucket.
    let consumer_settings = format!("trusted_keys = [\"{trusted}\"]\n");
    let consumers: Vec<Host> = (0..4)
        .map(|_| Host::new(bucket, &consumer_settings))
        .collect();
    std::thread::scope(|scope| {
        for consumer in &consumers {
            let modules = &modules;
            scope.spawn(move || {
                for (module, code) in modules.iter().zip(10..) {
                    let how = run_module(consumer, module, code);
                    assert!(how.contains("loaded from remote tier"), "{how}");
                }
            });
        }
    });
    // A module the fleet does not have: compiled here, said so, and never uploaded.
    let other = producer.env.write("m20.wat", common::exits_with(20));
    let how = run_module(&consumers[0], &other, 20);
    assert!(
        how.contains("compiled here: the fleet's signed tier"),
        "{how}"
    );
    assert_eq!(bucket.keys(), filled, "a consumer wrote the bucket");
    // A key file others can read, or a trusted key that is not one, is refused clearly.
    let key_file = producer.env.path().join("producer.pem");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = producer.run(&["stats"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("can be read by others (mode 644)"),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let typo = Host::new(bucket, "trusted_keys = [\"ed25519:00\"]\n");
    let out = typo.run(&["stats"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("key `trusted_keys`"),
        "{}",
        stderr(&out)
    );
    // `config` shows the key's place and the trusted keys, never a private key.
    let shown = ok(&producer.run(&["config"]));
    assert!(
        shown.contains("signing_key_file") && !shown.contains("PRIVATE"),
        "{shown}"
    );
    assert!(ok(&consumers[0].run(&["config"])).contains(&trusted));

    // A node with the fleet's MAC secret but no signing key replaces an entry in the bucket.
    let victim = key_of[0];
    let forged = warmcache_core::Integrity::keyed(b"this host's own local secret, 32 bytes+").seal(
        &victim,
        warmcache_wasmtime::ArtifactKind::Module.envelope_kind(),
        "mallory",
        b"not code",
    );
    futures::executor::block_on(warmcache_core::Backend::put(
        &signed,
        &victim,
        forged.clone(),
    ))
    .unwrap();
    let fresh = Host::new(bucket, &consumer_settings);
    for (module, code) in modules.iter().zip(10..) {
        let how = run_module(&fresh, module, code);
        assert!(
            how.contains("loaded from remote tier") || how.contains("compiled here"),
            "{how}"
        );
    }
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&fresh.run(&["stats", "--json"]))).unwrap();
    let forged_count: u64 = stats["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["forged"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(forged_count, 1, "{stats}");
    let still = futures::executor::block_on(warmcache_core::Backend::get(&signed, &victim))
        .unwrap()
        .unwrap();
    assert_eq!(
        still, forged,
        "a consumer deleted or replaced the forged entry"
    );
    // Forged again, with the inputs the real entry recorded: a new host's prefetch takes it for
    // one it loads, and its verification refuses it; the three genuine ones are copied.
    let forged_like = warmcache_core::Integrity::keyed(b"this host's own local secret, 32 bytes+")
        .seal_for(
            warmcache_core::Trust::Secret,
            &victim,
            &warmcache_core::Origin::new(
                warmcache_wasmtime::ArtifactKind::Module.envelope_kind(),
                "mallory",
            )
            .inputs(victim_inputs),
            0,
            b"not code",
            warmcache_core::Compression::None,
        );
    futures::executor::block_on(warmcache_core::Backend::put(&signed, &victim, forged_like))
        .unwrap();
    let warming = Host::new(bucket, &consumer_settings);
    let out = warming.run(&["prefetch"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = common::stdout(&out);
    assert!(
        said.starts_with("4 entries this host loads in the shared tiers: 3 copied")
            && said.contains(", 1 failed"),
        "{said}"
    );
    assert!(
        stderr(&out).contains(&format!("not copied: module {victim}")),
        "{}",
        stderr(&out)
    );
    for (module, code) in modules.iter().zip(10..).skip(1) {
        let how = run_module(&warming, module, code);
        assert!(how.contains("loaded from disk tier fs:"), "{how}");
    }

    // Fail: a clear error naming the key and the bucket, and no compile.
    let strict = Host::new(
        bucket,
        &format!("{consumer_settings}on_shared_miss = \"fail\"\n"),
    );
    let other = producer.env.write("m21.wat", common::exits_with(21));
    let out = strict.run(&["run", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let why = stderr(&out);
    assert!(
        why.contains("no entry for key") && why.contains("s3:"),
        "{why}"
    );
    // Wait, bounded: nobody produces it, so it compiles after the wait.
    let patient = Host::new(
        bucket,
        &format!("{consumer_settings}on_shared_miss = \"wait\"\ncoordination_wait_ms = 500\n"),
    );
    let how = run_module(&patient, &other, 21);
    assert!(how.contains("compiled here"), "{how}");

    // A revoked producer key: its entries are refused, and `verify` names them.
    let id = trusted.split('=').next().unwrap();
    let revoking = Host::new(
        bucket,
        &format!("{consumer_settings}revoked_keys = [\"{id}\"]\n"),
    );
    let out = revoking.run(&["verify"]);
    assert!(!out.status.success());
    let report = common::stdout(&out);
    assert!(
        report.contains(&format!("signed by {id}, a revoked key")),
        "{report}"
    );
    let how = run_module(&revoking, &modules[1], 11);
    assert!(how.contains("compiled here"), "{how}");

    // A stolen producer key: m12's entry replaced by m13's artifact, signed. Consumers load it
    // (the signature is valid) and run the wrong code; an audit, by anyone who can compile,
    // names it.
    let stolen = warmcache_core::SigningKey::from_pem(
        &std::fs::read_to_string(producer.env.path().join("producer.pem")).unwrap(),
    )
    .unwrap();
    let consumer_view = warmcache_core::Integrity::plain().trusting(stolen.public_key());
    let m13 = futures::executor::block_on(warmcache_core::Backend::get(&signed, &key_of[3]))
        .unwrap()
        .unwrap();
    let m13 = consumer_view
        .open_for(warmcache_core::Trust::Signature, &key_of[3], None, &m13)
        .unwrap();
    let swapped = warmcache_core::Integrity::plain().signing(stolen).seal_for(
        warmcache_core::Trust::Signature,
        &key_of[2],
        &warmcache_core::Origin::new(
            warmcache_wasmtime::ArtifactKind::Module.envelope_kind(),
            "mallory",
        ),
        0,
        m13.payload(),
        warmcache_core::Compression::None,
    );
    futures::executor::block_on(warmcache_core::Backend::put(&signed, &key_of[2], swapped))
        .unwrap();
    let victim = Host::new(bucket, &consumer_settings);
    let how = run_module(&victim, &modules[2], 13);
    assert!(how.contains("loaded from remote tier"), "{how}");
    let out = audit(&victim, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = common::stdout(&out);
    let m12 = modules[2].to_str().unwrap();
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("MISMATCH") && l.ends_with(m12)),
        "{report}"
    );
    assert!(report.contains(&format!("signed by {id}")), "{report}");
}

#[test]
fn a_fleet_on_moto_loads_only_what_its_producer_signed() {
    a_fleet_loads_only_what_its_producer_signed(&Bucket::moto());
}

#[test]
fn a_fleet_on_a_file_bucket_loads_only_what_its_producer_signed() {
    a_fleet_loads_only_what_its_producer_signed(&Bucket::dir());
}

/// moto (shared by the tests), with a bucket of its own for `tag`.
fn new_bucket(tag: &str) -> (&'static s3::Moto, String) {
    let moto = s3::shared();
    let bucket = s3::unique_bucket(tag);
    s3::create_bucket(moto.port(), &bucket);
    (moto, bucket)
}

/// Local entries of `machine`'s file tier, from `ls --json`.
fn local_entries(machine: &Machine) -> usize {
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&machine.run(&["ls", "--json"]))).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["tier"].as_str().unwrap().starts_with("fs:"))
        .count()
}

/// A new host warms its local tiers from the bucket with exactly the entries its
/// configuration loads (not another engine's), verified, within a size, from a manifest, and
/// resuming: what is already local is skipped. A host with the wrong secret copies nothing.
#[test]
fn prefetch_warms_a_new_host_with_the_entries_it_loads() {
    let (moto, bucket) = new_bucket("prefetch");
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    let producer = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let component = producer.env.write("run.wat", common::component(false));
    let other = producer.env.write("other.wat", common::module(7, 3));
    ok(&producer.run(&["precompile", hello, component.to_str().unwrap()]));
    // An entry of another engine: no host of this configuration loads it.
    ok(&producer.run(&["--opt-level", "none", "precompile", other.to_str().unwrap()]));

    let host = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let said = ok(&host.run(&["prefetch"]));
    assert!(
        said.starts_with("2 entries this host loads in the shared tiers: 2 copied"),
        "{said}"
    );
    assert_eq!(local_entries(&host), 2);
    let out = host.run(&["run", "-v", hello]);
    assert!(
        stderr(&out).contains("loaded from disk tier fs:"),
        "{}",
        stderr(&out)
    );
    // Run again, it copies nothing.
    let said = ok(&host.run(&["prefetch"]));
    assert!(said.contains(": 0 copied (0 B), 2 already local"), "{said}");

    // Within a size: nothing fits in one byte.
    let small = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let said = ok(&small.run(&["prefetch", "--max-size", "1"]));
    assert!(
        said.contains(": 0 copied (0 B), 0 already local, 2 left out"),
        "{said}"
    );
    assert_eq!(local_entries(&small), 0);

    // Within the local tier's room (90% of a 16 KiB file tier, sizes as stored there,
    // decompressed): the entry that fits is copied, the other left out rather than evicting
    // what was just copied.
    let tight = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let text = std::fs::read_to_string(&tight.config).unwrap();
    let config = tight.env.write(
        "tight.toml",
        text.replace("kind = \"fs\"\n", "kind = \"fs\"\nsize = \"16KiB\"\n"),
    );
    let tight = Machine { config, ..tight };
    let said = ok(&tight.run(&["prefetch"]));
    assert!(said.contains(": 1 copied"), "{said}");
    assert!(said.contains("0 already local, 1 left out"), "{said}");
    assert!(said.contains(", 0 failed"), "{said}");
    assert_eq!(local_entries(&tight), 1);

    // A manifest: the module it names by path; one this configuration has no entry of is
    // named, and the command fails. The full prefetch after it copies the rest.
    let listed = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    std::fs::copy(hello, listed.env.path().join("hello.wat")).unwrap();
    std::fs::copy(&other, listed.env.path().join("other.wat")).unwrap();
    let manifest = listed
        .env
        .write("manifest", "# deployed\nhello.wat\n\nother.wat\n");
    let out = listed.run(&["prefetch", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = common::stdout(&out);
    assert!(
        said.starts_with("1 entries this host loads in the shared tiers: 1 copied"),
        "{said}"
    );
    assert!(
        stderr(&out).contains("not in any shared tier for this configuration: other.wat ("),
        "{}",
        stderr(&out)
    );
    let said = ok(&listed.run(&["prefetch"]));
    assert!(said.contains(": 1 copied"), "{said}");
    assert!(said.contains(", 1 already local"), "{said}");
    assert_eq!(local_entries(&listed), 2);

    // Another secret keys another namespace of the bucket: nothing there for this host.
    let stranger = Machine::new(moto, &bucket, "OTHER_SECRET");
    let said = ok(&stranger.run(&["prefetch"]));
    assert!(said.starts_with("0 entries this host loads"), "{said}");
    assert_eq!(local_entries(&stranger), 0);
}

/// A host with CPU levels takes the levels it runs, and only those.
#[test]
fn prefetch_takes_the_cpu_levels_a_host_runs() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: the levels here are x86-64's");
        return;
    }
    let (moto, bucket) = new_bucket("prefetch-levels");
    let hello = common::hello();
    let hello = hello.to_str().unwrap();
    let producer = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    ok(&producer.run(&["precompile", "--cpu-levels", "x86-64-v1,x86-64-v2", hello]));

    let oldest = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let said = ok(&oldest.run(&["--cpu-level", "x86-64-v1", "prefetch"]));
    assert!(said.starts_with("1 entries this host loads"), "{said}");
    let newer = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let said = ok(&newer.run(&["--cpu-level", "x86-64-v2", "prefetch"]));
    assert!(said.starts_with("2 entries this host loads"), "{said}");
    // A host without levels keys by its own CPU: neither entry is one it looks up.
    let native = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let said = ok(&native.run(&["prefetch"]));
    assert!(said.starts_with("0 entries this host loads"), "{said}");
}

/// A prefetch killed while it copies leaves only whole, verified entries, and the next one
/// copies the rest: the bucket's object reads are slowed (one second each, through a proxy) so
/// that the kill lands while copies are in flight.
#[test]
fn an_interrupted_prefetch_resumes_where_it_stopped() {
    let (moto, bucket) = new_bucket("prefetch-resume");
    let producer = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let modules: Vec<String> = (0..12)
        .map(|seed| {
            let file = producer
                .env
                .write(&format!("m{seed}.wat"), common::module(seed, 40));
            file.to_str().unwrap().to_owned()
        })
        .collect();
    let mut args = vec!["precompile"];
    args.extend(modules.iter().map(String::as_str));
    ok(&producer.run(&args));

    let proxy = crate::faults::FaultProxy::start(moto.port(), |request| {
        // Object reads only; listings pass.
        if request.method == "GET" && !request.path.contains('?') {
            crate::faults::Fault::Latency(std::time::Duration::from_secs(1))
        } else {
            crate::faults::Fault::Pass
        }
    });
    let host = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let direct = std::fs::read_to_string(&host.config).unwrap();
    let slow = host.env.write(
        "slow.toml",
        direct.replace(&moto.endpoint(), &proxy.endpoint()),
    );
    let files = host.env.cache_dir().join("files");
    let mut child = with_credentials(&host.env)
        .args(["--config", slow.to_str().unwrap()])
        .args(["--secret-env", "WARMCACHE_SECRET", "prefetch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while common::users::entry_files(&files).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no entry arrived");
        assert!(child.try_wait().unwrap().is_none(), "prefetch ended first");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let arrived = common::users::entry_files(&files).len();
    assert!(
        (1..12).contains(&arrived),
        "{arrived} entries arrived before the kill"
    );

    // What arrived is whole: it verifies, and it is not copied again (read directly now).
    ok(&host.run(&["verify"]));
    let said = ok(&host.run(&["prefetch"]));
    assert!(
        said.starts_with(&format!(
            "12 entries this host loads in the shared tiers: {} copied",
            12 - arrived
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(", {arrived} already local")),
        "{said}"
    );
    assert_eq!(common::users::entry_files(&files).len(), 12);
}

/// A shared tier that cannot be reached fails `prefetch` with the tier's name, and a stack
/// without a local tier that keeps pins refuses `pin` clearly: nothing is half done.
#[test]
fn prefetch_and_pin_refuse_what_they_cannot_do() {
    let env = Env::new();
    // Nothing listens on port 9 of loopback.
    let config = env.write(
        "nowhere.toml",
        "[[tiers]]\nkind = \"fs\"\n\n[[tiers]]\nkind = \"s3\"\nurl = \"s3://nowhere/modules\"\nendpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"\nallow_http = true\ntimeout_ms = 2000\n",
    );
    let out = with_credentials(&env)
        .args(["--config", config.to_str().unwrap()])
        .args(["--secret-env", "WARMCACHE_SECRET", "prefetch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("error: listing s3:s3://nowhere/modules"),
        "{}",
        stderr(&out)
    );
    // Only the in-process tier and the bucket: no tier keeps pins.
    let (moto, bucket) = new_bucket("pin-nowhere");
    let machine = Machine::new(moto, &bucket, "WARMCACHE_SECRET");
    let text = std::fs::read_to_string(&machine.config).unwrap();
    let config = machine.env.write(
        "no-disk.toml",
        text.replace("[[tiers]]\nkind = \"fs\"\n\n", ""),
    );
    let machine = Machine { config, ..machine };
    let out = machine.run(&["pin", common::hello().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no configured tier keeps pins"),
        "{}",
        stderr(&out)
    );
    let out = machine.run(&["prefetch"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no writable one is configured"),
        "{}",
        stderr(&out)
    );
}
