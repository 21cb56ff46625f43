//! The embedded default stack (memory, then a redb file under the user's cache directory) in
//! front of an expensive computation. Run it twice: the first run computes, the second starts
//! warm from disk.
//!
//! ```text
//! cargo run --release -p warmcache-redb --example warm_start
//! ```

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use warmcache_core::bytes::Bytes;
use warmcache_core::{Backend, BytesCodec, Cache, Tier, Tiered};
use warmcache_memory::MemoryBackend;
use warmcache_redb::RedbBackend;

/// Stands in for a compiler: 64 MiB of blake3 output, derived from the whole input, four times.
fn compile(source: &(String, u32)) -> Result<Bytes, std::io::Error> {
    let mut artifact = vec![0u8; 64 << 20];
    let mut seed = blake3::hash(source.0.as_bytes());
    for _ in 0..4 {
        let mut hasher = blake3::Hasher::new();
        hasher.update(seed.as_bytes());
        hasher.update(&source.1.to_le_bytes());
        hasher.finalize_xof().fill(&mut artifact);
        seed = blake3::hash(&artifact);
    }
    artifact.truncate(16 << 20);
    Ok(Bytes::from(artifact))
}

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("warmcache")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = cache_dir().join("example.redb");
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::with_capacity(256 << 20)?);
    let disk: Arc<dyn Backend> = Arc::new(
        RedbBackend::builder(&path)
            .capacity(1 << 30)
            .open_or_recreate()?,
    );
    let tiers = Tiered::builder()
        .tier(Tier::new(memory).name("memory"))
        .tier(Tier::new(disk).name("redb"))
        .build();
    let cache = Cache::builder("warm-start-example", BytesCodec)
        .tiers(tiers)
        .build();

    let source = ("fn main() { println!(\"hello\") }".to_owned(), 3);
    let started = Instant::now();
    let artifact = cache.get_or_compute(&source, compile)?;
    let elapsed = started.elapsed();
    let stats = cache.stats();
    let origin = if stats.computes > 0 {
        "computed (cold)"
    } else {
        "loaded and verified from redb (warm)"
    };
    println!(
        "{} bytes {origin} in {:.1} ms; cache file {}",
        artifact.len(),
        elapsed.as_secs_f64() * 1e3,
        path.display()
    );
    let started = Instant::now();
    cache.get_or_compute(&source, compile)?;
    println!(
        "second request in the same process: {:.3} ms (live tier)",
        started.elapsed().as_secs_f64() * 1e3
    );
    if stats.computes > 0 {
        println!("run the same command again to see the warm start");
    }
    cache.flush();
    Ok(())
}
