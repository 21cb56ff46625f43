//! Real servers for tests: moto's standalone S3 server (here), nginx as a WebDAV server
//! ([`webdav`]), each on a free loopback port, and a proxy that puts a network's latency
//! between a client and one of them ([`delay`]).
//!
//! A server runs under a small shell guard that kills it when this test process's end of a
//! pipe closes, so it stops with the tests even if they panic or abort.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use warmcache_core::Backend;
use warmcache_s3::{S3Backend, S3BackendBuilder};

pub mod delay;
pub mod webdav;

pub struct Moto {
    port: u16,
    process: Guarded,
}

/// A server process started under a shell guard that kills it when this test process's end of
/// its stdin pipe closes: at drop, at [`stop`](Self::stop), or when the tests abort.
pub struct Guarded {
    child: Child,
    guard: Option<ChildStdin>,
}

impl Guarded {
    /// Runs `command` (a `sh -c` script that ends its server when stdin closes).
    pub fn spawn(mut command: Command, what: &str) -> Self {
        let mut child = command.stdin(Stdio::piped()).spawn().unwrap_or_else(|e| {
            panic!("cannot start {what}: {e}; run scripts/test.sh, which installs it")
        });
        let guard = child.stdin.take();
        Self { child, guard }
    }

    /// Stops the server and waits for it.
    pub fn stop(&mut self) {
        drop(self.guard.take());
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WARMCACHE_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/warmcache-venv/bin/moto_server"));
    if let Some(v) = venv.filter(|v| v.exists()) {
        return v;
    }
    PathBuf::from("moto_server")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One raw HTTP/1.1 request; returns the status code.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:.80}")))
}

impl Moto {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` (for restarting one after an outage).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Starts a server on a free port with extra environment variables for moto.
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        Self::start_with(free_port(), env)
    }

    fn start_with(port: u16, env: &[(&str, &str)]) -> Self {
        let binary = moto_binary();
        let mut command = Command::new("sh");
        command
            .envs(env.iter().copied())
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid; wait $pid"#)
            .arg(&binary)
            .arg(port.to_string());
        let process = Guarded::spawn(command, &format!("moto ({})", binary.display()));
        let moto = Self { port, process };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http(port, "GET", "/").is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server ({}) did not answer on port {port}; is moto[server] installed?",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server now.
    pub fn stop(mut self) {
        self.process.stop();
    }
}

/// Creates `bucket` on the server at `port` (idempotent).
pub fn create_bucket(port: u16, bucket: &str) {
    let status = http(port, "PUT", &format!("/{bucket}")).unwrap();
    assert!(
        status == 200 || status == 409,
        "creating bucket {bucket} failed with HTTP {status}"
    );
}

/// A bucket name unique to this process and call.
pub fn unique_bucket(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "wc-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One server shared by the tests of this binary; stopped when the process exits.
pub fn shared() -> &'static Moto {
    static SERVER: OnceLock<Moto> = OnceLock::new();
    SERVER.get_or_init(Moto::start)
}

/// A backend on `bucket` of the moto server at `endpoint`.
pub fn backend(endpoint: &str, bucket: &str, prefix: &str) -> S3Backend {
    S3Backend::builder(format!("s3://{bucket}/{prefix}"))
        .endpoint(endpoint)
        .allow_http(true)
        .region("us-east-1")
        .credentials("testing", "testing-secret")
        .timeout(Duration::from_secs(20))
        // Low, so the conformance suite's 32 MiB values exercise multipart uploads.
        .multipart_threshold(8 << 20)
        .build()
        .unwrap()
}

/// What `dir` records in `file` (a server's address), recording `fresh()` there first: a
/// reopen, or the crash test's child process, finds the same server.
pub fn recorded(dir: &Path, file: &str, fresh: impl FnOnce() -> String) -> String {
    let record = dir.join(file);
    std::fs::read_to_string(&record).unwrap_or_else(|_| {
        let value = fresh();
        std::fs::write(&record, &value).unwrap();
        value
    })
}

/// A bucket (container, collection) name derived from a conformance check's directory: each
/// check gets a store of its own, the same one after a reopen.
pub fn bucket_for(dir: &Path) -> String {
    let digest = blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex();
    format!("wc-{}", &digest[..20])
}

/// The port of an `http://127.0.0.1:PORT` endpoint.
pub fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

/// The conformance harness: the bucket is derived from `dir`, and the endpoint is recorded in
/// `dir`, so a reopen, or the crash test's child process, finds the same bucket on the same
/// server.
pub fn harness(dir: &Path) -> warmcache_core::Result<Arc<dyn Backend>> {
    let endpoint = recorded(dir, "moto-endpoint", || shared().endpoint());
    let bucket = bucket_for(dir);
    create_bucket(port_of(&endpoint), &bucket);
    Ok(Arc::new(backend(&endpoint, &bucket, "cache")))
}

/// A server the remote-tier tests run against: moto (`s3://`) or Azurite (`az://`).
pub trait Server: Sized + Send + Sync + 'static {
    /// Starts one on a free port.
    fn start() -> Self;
    /// Starts one on `port`, with empty storage (after an outage).
    fn start_on(port: u16) -> Self;
    /// One server shared by the tests of this binary.
    fn shared() -> &'static Self;
    fn port(&self) -> u16;
    /// Creates a bucket or container (idempotent).
    fn create_bucket(&self, bucket: &str);
    /// A backend on `bucket` under `prefix`, tuned by `tune`.
    fn backend_with(
        &self,
        bucket: &str,
        prefix: &str,
        tune: impl FnOnce(S3BackendBuilder) -> S3BackendBuilder,
    ) -> S3Backend;
    /// Stops it now.
    fn stop(self);
}

impl Server for Moto {
    fn start() -> Self {
        Moto::start()
    }
    fn start_on(port: u16) -> Self {
        Moto::start_on(port)
    }
    fn shared() -> &'static Self {
        shared()
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn create_bucket(&self, bucket: &str) {
        create_bucket(self.port, bucket);
    }
    fn backend_with(
        &self,
        bucket: &str,
        prefix: &str,
        tune: impl FnOnce(S3BackendBuilder) -> S3BackendBuilder,
    ) -> S3Backend {
        let builder = S3Backend::builder(format!("s3://{bucket}/{prefix}"))
            .endpoint(self.endpoint())
            .allow_http(true)
            .region("us-east-1")
            .credentials("testing", "testing-secret")
            .timeout(Duration::from_secs(20))
            .multipart_threshold(8 << 20);
        tune(builder).build().unwrap()
    }
    fn stop(self) {
        Moto::stop(self);
    }
}
