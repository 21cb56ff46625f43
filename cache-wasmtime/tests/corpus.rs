//! End to end on the real modules of the corpus (opt-in: they take seconds to minutes to compile
//! in a debug build). Run with
//! `WARMCACHE_CORPUS_TESTS=1 cargo test -p warmcache-wasmtime --test integration corpus:: -- --nocapture`,
//! optionally limited with `WARMCACHE_CORPUS_MODULES=icepll,resvg`. Skipped, with a message, when
//! not requested or when the corpus is absent (`scripts/fetch-corpus.sh` downloads it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::sync::Arc;

use crate::corpus_files as corpus;

use warmcache_core::{Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_redb::RedbBackend;
use warmcache_wasmtime::ModuleCache;
use wasmtime::{Engine, Module};

const MODULES: &[&str] = &["icepll", "boolector", "resvg", "esbuild", "yosys"];

fn stack(dir: &Path) -> ModuleCache {
    let files = Arc::new(FsBackend::builder(dir.join("files")).open().unwrap());
    let redb = Arc::new(RedbBackend::builder(dir.join("cache.redb")).open().unwrap());
    ModuleCache::new(
        Tiered::builder()
            .tier(Tier::new(files))
            .tier(Tier::new(redb))
            .build(),
    )
}

fn shape(module: &Module) -> (Vec<String>, Vec<String>) {
    let imports = module
        .imports()
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    let exports = module.exports().map(|e| e.name().to_owned()).collect();
    (imports, exports)
}

#[test]
fn corpus_modules_compile_once_and_warm_start_from_files() {
    if std::env::var_os("WARMCACHE_CORPUS_TESTS").is_none() {
        eprintln!("corpus test skipped: set WARMCACHE_CORPUS_TESTS=1 to run it");
        return;
    }
    let Some(dir) = corpus::dir().filter(|d| d.join("SHA256SUMS").exists()) else {
        eprintln!("corpus test skipped: no corpus; run scripts/fetch-corpus.sh");
        return;
    };
    let only = std::env::var("WARMCACHE_CORPUS_MODULES").ok();
    let engine = Engine::default();
    for name in MODULES {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|m| m == *name))
        {
            continue;
        }
        let wasm = std::fs::read(dir.join(format!("{name}.wasm"))).unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        let compiled = stack(cache_dir.path())
            .get_or_compile(&engine, &wasm)
            .unwrap();

        let warm = stack(cache_dir.path());
        let loaded = warm.get_or_compile(&engine, &wasm).unwrap();
        let stats = warm.stats();
        assert_eq!((stats.computes, stats.file_loads), (0, 1), "{name}");
        assert_eq!(shape(&compiled), shape(&loaded), "{name}");
        if *name != "esbuild" {
            assert!(
                shape(&loaded).1.iter().any(|e| e == "_start"),
                "{name} is a command"
            );
        }
        eprintln!(
            "{name}: {} bytes, warm start {:.1} ms (debug build), compile saved {:.0} ms",
            wasm.len(),
            stats.load_ms,
            stats.compute_saved_ms
        );
    }
}
