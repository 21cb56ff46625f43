//! Fills a tier with many small, valid entries, for `scripts/bench-large.sh`:
//!
//! ```sh
//! cargo run --release -p warmcache --example fill -- fs DIR COUNT
//! cargo run --release -p warmcache --example fill -- redb FILE COUNT
//! cargo run --release -p warmcache --example fill -- s3 s3://bucket/prefix COUNT ENDPOINT
//! ```
//!
//! Entries are 512-byte payloads sealed as module artifacts with the secret in
//! `WARMCACHE_SECRET` (as the `warmcache` command seals them with `--secret-env`), under keys
//! derived from their index. Writes run on 8 threads.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::executor::block_on;
use warmcache_core::{Backend, CacheKey, Compression, Integrity, Origin};
use warmcache_wasmtime::ArtifactKind;

const THREADS: u64 = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, target, count) = match args.as_slice() {
        [kind, target, count, ..] => (kind.as_str(), target.as_str(), count.parse::<u64>()?),
        _ => return Err("usage: fill fs|redb|s3 TARGET COUNT [ENDPOINT]".into()),
    };
    let secret = std::env::var("WARMCACHE_SECRET").map_err(|_| "set WARMCACHE_SECRET")?;
    let integrity = Integrity::keyed(secret.as_bytes());
    let backend: Arc<dyn Backend> = match kind {
        "fs" => Arc::new(
            warmcache_fs::FsBackend::builder(target)
                .capacity(1 << 40)
                .open()?,
        ),
        "redb" => Arc::new(
            warmcache_redb::RedbBackend::builder(target)
                .capacity(1 << 40)
                .open()?,
        ),
        "s3" => Arc::new(
            warmcache_s3::S3Backend::builder(target)
                .endpoint(args.get(3).ok_or("s3 needs an ENDPOINT")?)
                .allow_http(true)
                .region("us-east-1")
                .credentials("testing", "testing-secret")
                // Where `warmcache` looks in a bucket: the namespace of the secret's key.
                .namespace(integrity.key_id())
                .build()?,
        ),
        other => return Err(format!("unknown tier kind {other}").into()),
    };
    let origin = Origin::new(ArtifactKind::Module.envelope_kind(), "fill");
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        let key = CacheKey::pseudo_random(i);
                        let payload = vec![(i % 251) as u8; 512];
                        let sealed =
                            integrity.seal_origin(&key, &origin, &payload, Compression::None);
                        block_on(backend.put(&key, sealed)).map_err(|e| e.to_string())?;
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| match w.join() {
            Ok(result) => result,
            Err(_) => Err("a writer panicked".to_owned()),
        })
    })?;
    println!("{count} entries in {kind} {target}");
    Ok(())
}
