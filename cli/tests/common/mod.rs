//! Running the built `warmcache` binary in an isolated environment.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

pub mod users;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A home of its own for each test: cache, config and HOME all under one temp dir, and no
/// `WARMCACHE_*` variables inherited.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default cache directory under this environment.
    pub fn cache_dir(&self) -> PathBuf {
        self.path().join("cache").join("warmcache")
    }

    /// The default config file location under this environment.
    pub fn config_file(&self) -> PathBuf {
        self.path()
            .join("config")
            .join("warmcache")
            .join("config.toml")
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warmcache"));
        for (key, _) in std::env::vars() {
            if key.starts_with("WARMCACHE_") || key.starts_with("AWS_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", self.path())
            .env("XDG_CACHE_HOME", self.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs `warmcache ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Writes `text` to `name` under the environment and returns the path.
    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// The shipped example module.
pub fn hello() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("hello.wat")
}

/// A WASI command that exits with `code`.
pub fn exits_with(code: i32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"#
    )
}

/// A WASI command that exits with the number of environment variables it sees.
pub const COUNTS_ENV: &str = r#"(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (call $exit (i32.load (i32.const 0)))))"#;

/// A WASI command that exits with the number of its arguments (including its name).
pub const COUNTS_ARGS: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (call $exit (i32.load (i32.const 0)))))"#;

/// A WASI command that exits 0 when file descriptor 3 is a preopened directory, else with the
/// errno of `fd_prestat_get`.
pub const CHECKS_PREOPEN: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (call $prestat (i32.const 3) (i32.const 0)))))"#;

/// A WASI preview 2 command component whose `run` returns ok, or an error when `fails`.
pub fn component(fails: bool) -> String {
    format!(
        r#"(component
  (core module $m (func (export "run") (result i32) i32.const {}))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $r)))"#,
        u8::from(fails)
    )
}

/// A small valid module with `n` functions, distinct per `seed`.
pub fn module(seed: u32, n: u32) -> String {
    let mut wat = String::from("(module\n");
    for i in 0..n {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (result i32) i32.const {})\n",
            seed * 1000 + i
        ));
    }
    wat.push(')');
    wat
}
