//! The CLI with a remote tier: a second machine warm-starts from the bucket, and an unreachable
//! remote only costs a warning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "../../backend-s3/tests/common/mod.rs"]
mod s3;

use common::{Env, ok, stderr};

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
    let moto = s3::shared();
    let bucket = s3::unique_bucket("cli");
    s3::create_bucket(moto.port(), &bucket);
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
