//! A real Azure Blob Storage server for tests: Azurite, Microsoft's emulator (from npm), on a
//! free loopback port, under the same pipe guard as moto so it stops with the tests.
//!
//! Included by the test files that need it (`#[path]`), next to `mod common;`, so the other
//! users of `common` need no signing crates.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::common::Guarded;
use warmcache_s3::{S3Backend, S3BackendBuilder};

/// Azurite's well-known development account and key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    port: u16,
    process: Guarded,
    _data: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WARMCACHE_AZURITE") {
        return PathBuf::from(p);
    }
    let installed = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/warmcache-azurite/node_modules/.bin/azurite-blob"));
    if let Some(p) = installed.filter(|p| p.exists()) {
        return p;
    }
    PathBuf::from("azurite-blob")
}

impl Azurite {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_on(crate::common::free_port())
    }

    /// Starts a server on `port`, with empty storage.
    pub fn start_on(port: u16) -> Self {
        let data = tempfile::tempdir().unwrap();
        let binary = binary();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(
                r#""$0" --blobHost 127.0.0.1 --blobPort "$1" --location "$2" --silent \
                   --skipApiVersionCheck --loose >/dev/null 2>&1 & pid=$!; cat >/dev/null; \
                   kill $pid; wait $pid"#,
            )
            .arg(&binary)
            .arg(port.to_string())
            .arg(data.path());
        let process = Guarded::spawn(command, &format!("Azurite ({})", binary.display()));
        let server = Self {
            port,
            process,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while request(port, "GET", "/", "").is_err() {
            assert!(
                Instant::now() < deadline,
                "Azurite ({}) did not answer on port {port}; is it installed?",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server as a client sees it.
    pub fn attached(&self) -> Attached {
        Attached::new(self.port)
    }

    /// Creates `container` (idempotent).
    pub fn create_container(&self, container: &str) {
        self.attached().create_container(container);
    }

    /// A backend on `container` with the development account, tuned by `tune`.
    pub fn backend_with(
        &self,
        container: &str,
        prefix: &str,
        tune: impl FnOnce(S3BackendBuilder) -> S3BackendBuilder,
    ) -> S3Backend {
        self.attached().backend_with(container, prefix, tune)
    }

    /// Stops the server now.
    pub fn stop(mut self) {
        self.process.stop();
    }
}

/// An Azurite server at a port, started by this process or another (the crash test's parent).
pub struct Attached {
    port: u16,
}

impl Attached {
    pub fn new(port: u16) -> Self {
        Self { port }
    }

    /// The account's endpoint (path style, as Azurite serves it).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Creates `container` (idempotent).
    pub fn create_container(&self, container: &str) {
        let status = request(
            self.port,
            "PUT",
            &format!("/{ACCOUNT}/{container}"),
            "restype=container",
        )
        .unwrap();
        assert!(
            status == 201 || status == 409,
            "creating container {container} failed with HTTP {status}"
        );
    }

    /// A backend on `container` with the development account, tuned by `tune`.
    pub fn backend_with(
        &self,
        container: &str,
        prefix: &str,
        tune: impl FnOnce(S3BackendBuilder) -> S3BackendBuilder,
    ) -> S3Backend {
        let builder = S3Backend::builder(format!("az://{container}/{prefix}"))
            .endpoint(self.endpoint())
            .allow_http(true)
            .option("account_name", ACCOUNT)
            .option("access_key", KEY)
            .timeout(Duration::from_secs(20))
            .multipart_threshold(8 << 20);
        tune(builder).build().unwrap()
    }
}

/// One server shared by the tests of this binary.
pub fn shared() -> &'static Azurite {
    static SERVER: OnceLock<Azurite> = OnceLock::new();
    SERVER.get_or_init(Azurite::start)
}

/// One request signed with the development account's Shared Key; returns the status code.
fn request(port: u16, method: &str, path: &str, query: &str) -> std::io::Result<u16> {
    let date = httpdate();
    let version = "2021-08-06";
    let mut resource = format!("/{ACCOUNT}{path}");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some((k, v)) = pair.split_once('=') {
            resource.push_str(&format!("\n{k}:{v}"));
        }
    }
    let to_sign = format!(
        "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .map_err(std::io::Error::other)?;
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        to_sign.as_bytes(),
    );
    let signature = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-ms-date: {date}\r\n\
         x-ms-version: {version}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:.80}")))
}

/// Now, as an HTTP date (RFC 7231, always GMT).
fn httpdate() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        months[(month - 1) as usize]
    )
}

impl crate::common::Server for Azurite {
    fn start() -> Self {
        Azurite::start()
    }
    fn start_on(port: u16) -> Self {
        Azurite::start_on(port)
    }
    fn shared() -> &'static Self {
        shared()
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn create_bucket(&self, bucket: &str) {
        self.create_container(bucket);
    }
    fn backend_with(
        &self,
        bucket: &str,
        prefix: &str,
        tune: impl FnOnce(S3BackendBuilder) -> S3BackendBuilder,
    ) -> S3Backend {
        Azurite::backend_with(self, bucket, prefix, tune)
    }
    fn stop(self) {
        Azurite::stop(self);
    }
}
