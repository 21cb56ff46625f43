//! A real WebDAV server for tests: nginx with its dav module (PUT, DELETE, MKCOL, COPY, MOVE)
//! and the dav-ext module (PROPFIND), both from apt, on a free loopback port and a temporary
//! root, under the same pipe guard as moto so it stops with the tests.
//!
//! nginx writes a PUT's body to a temporary file and renames it into place, so readers see a
//! whole object or none; it refuses `PROPFIND` with `Depth: infinity` (403), which is why the
//! backend lists WebDAV stores one directory at a time.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Guarded, free_port, http};
use warmcache_s3::{S3Backend, S3BackendBuilder};

pub struct Nginx {
    port: u16,
    process: Guarded,
    root: tempfile::TempDir,
}

fn binary() -> PathBuf {
    std::env::var_os("WARMCACHE_NGINX")
        .map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from)
}

fn dav_ext_module() -> PathBuf {
    std::env::var_os("WARMCACHE_NGINX_DAV_EXT").map_or_else(
        || PathBuf::from("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"),
        PathBuf::from,
    )
}

impl Nginx {
    /// Starts a server on `port`, with empty storage, and waits until it answers.
    fn launch(port: u16) -> Self {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let temp = root.path().join("temp");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&temp).unwrap();
        let config = root.path().join("nginx.conf");
        // One process in the foreground: the guard's kill stops all of it.
        std::fs::write(
            &config,
            format!(
                r#"load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp};
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        root {data};
        location / {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
        }}
    }}
}}
"#,
                module = dav_ext_module().display(),
                dir = root.path().display(),
                temp = temp.display(),
                data = data.display(),
            ),
        )
        .unwrap();
        let binary = binary();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#""$0" -c "$1" -p "$2" -e "$2/error.log" >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill $pid; wait $pid"#)
            .arg(&binary)
            .arg(&config)
            .arg(root.path());
        let process = Guarded::spawn(command, &format!("nginx ({})", binary.display()));
        let server = Self {
            port,
            process,
            root,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "OPTIONS", "/").is_err() {
            let log =
                std::fs::read_to_string(server.root.path().join("error.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "nginx ({}) did not answer on port {port}; scripts/test.sh installs nginx and \
                 libnginx-mod-http-dav-ext. Its log: {log}",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A backend on `bucket` under `prefix` of the server at `endpoint`, tuned by `tune`.
    pub fn backend_at(
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        tune: impl FnOnce(S3BackendBuilder) -> S3BackendBuilder,
    ) -> S3Backend {
        let builder = S3Backend::builder(format!("{endpoint}/{bucket}/{prefix}"))
            .name("webdav")
            .timeout(Duration::from_secs(20));
        tune(builder).build().unwrap()
    }
}

/// Creates the collection `name` at the root of the server on `port` (idempotent).
pub fn create_collection(port: u16, name: &str) {
    let status = http(port, "MKCOL", &format!("/{name}/")).unwrap();
    assert!(
        status == 201 || status == 405,
        "creating collection {name} failed with HTTP {status}"
    );
}

/// One server shared by the tests of this binary; stopped when the process exits.
pub fn shared() -> &'static Nginx {
    static SERVER: OnceLock<Nginx> = OnceLock::new();
    SERVER.get_or_init(|| Nginx::launch(free_port()))
}

/// A collection at the root stands for a bucket.
impl super::Server for Nginx {
    fn start() -> Self {
        Nginx::launch(free_port())
    }
    fn start_on(port: u16) -> Self {
        Nginx::launch(port)
    }
    fn shared() -> &'static Self {
        shared()
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn create_bucket(&self, bucket: &str) {
        create_collection(self.port, bucket);
    }
    fn backend_with(
        &self,
        bucket: &str,
        prefix: &str,
        tune: impl FnOnce(S3BackendBuilder) -> S3BackendBuilder,
    ) -> S3Backend {
        Nginx::backend_at(&self.endpoint(), bucket, prefix, tune)
    }
    fn stop(mut self) {
        self.process.stop();
    }
}
