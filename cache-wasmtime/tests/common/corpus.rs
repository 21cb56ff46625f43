//! Where the real-world corpus is (`$WARMCACHE_CORPUS/set`, default
//! `~/.cache/warmcache-corpus/set`), for the corpus tests and the benchmarks.
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::path::PathBuf;

/// The corpus directory, if a home or `WARMCACHE_CORPUS` says where it is.
pub fn dir() -> Option<PathBuf> {
    let base = std::env::var_os("WARMCACHE_CORPUS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/warmcache-corpus"))
        })?;
    Some(base.join("set"))
}

/// The named modules (`<name>.wasm`) that are present, saying which are skipped.
pub fn modules(names: &[&str]) -> Vec<(String, Vec<u8>)> {
    let dir = dir();
    let mut found = Vec::new();
    for name in names {
        match dir
            .as_ref()
            .map(|d| std::fs::read(d.join(format!("{name}.wasm"))))
        {
            Some(Ok(bytes)) => found.push(((*name).to_owned(), bytes)),
            _ => eprintln!(
                "{name}.wasm not found in the corpus (scripts/fetch-corpus.sh fetches it); \
                 skipped"
            ),
        }
    }
    found
}
