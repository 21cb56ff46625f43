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

#[test]
fn a_second_machine_warm_starts_from_the_bucket() {
    let moto = s3::shared();
    let bucket = s3::unique_bucket("cli");
    s3::create_bucket(moto.port(), &bucket);
    let hello = common::hello();

    let first = Env::new();
    let config = remote_config(&first, &moto.endpoint(), &bucket);
    let out = with_credentials(&first)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--secret-env",
            "WARMCACHE_SECRET",
        ])
        .args(["run", "-v", hello.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    assert!(stderr(&out).contains("compiled"), "{}", stderr(&out));

    // Another machine: empty local tiers, same bucket and secret.
    let second = Env::new();
    let config = remote_config(&second, &moto.endpoint(), &bucket);
    let run = || {
        with_credentials(&second)
            .args([
                "--config",
                config.to_str().unwrap(),
                "--secret-env",
                "WARMCACHE_SECRET",
            ])
            .args(["run", "-v", hello.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    let how = stderr(&out);
    assert!(how.contains("loaded from remote tier s3:s3://"), "{how}");
    // Promoted into the local file tier.
    let out = run();
    assert!(
        stderr(&out).contains("loaded from disk tier fs:"),
        "{}",
        stderr(&out)
    );

    // Without the secret the entries do not verify: refused, compiled again, never loaded.
    let third = Env::new();
    let config = remote_config(&third, &moto.endpoint(), &bucket);
    let out = with_credentials(&third)
        .env(
            "OTHER_SECRET",
            "not the secret the bucket was written with!",
        )
        .args([
            "--config",
            config.to_str().unwrap(),
            "--secret-env",
            "OTHER_SECRET",
        ])
        .args(["run", "-v", hello.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(ok(&out), "Hello from warmcache!\n");
    assert!(stderr(&out).contains("compiled"), "{}", stderr(&out));
    // ... and its `verify --remove` (with its wrong secret) does not empty the fleet's bucket.
    let out = with_credentials(&third)
        .env(
            "OTHER_SECRET",
            "not the secret the bucket was written with!",
        )
        .args([
            "--config",
            config.to_str().unwrap(),
            "--secret-env",
            "OTHER_SECRET",
        ])
        .args(["verify", "--remove"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        stderr(&out)
    );

    // A new machine of the fleet still warm-starts from the bucket.
    let fourth = Env::new();
    let config = remote_config(&fourth, &moto.endpoint(), &bucket);
    let out = with_credentials(&fourth)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--secret-env",
            "WARMCACHE_SECRET",
        ])
        .args(["run", "-v", hello.to_str().unwrap()])
        .output()
        .unwrap();
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
