//! Opening the configured tiers. A tier that cannot be opened is skipped with a warning, so a
//! locked database or a bad remote never stops a run.
//!
//! A `memory` tier is the cache's in-process tier of loaded modules, bounded by their code size:
//! for compiled wasm that is what memory is for, and a memory tier of bytes in front of the file
//! tier would only copy each mapped artifact into the heap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use warmcache_core::{Backend, Compression, ErrorKind, Integrity, Tier, Tiered};
use warmcache_fs::FsBackend;
use warmcache_redb::RedbBackend;
use warmcache_s3::S3Backend;

use crate::config::{CompressionSetting, Settings, TierConfig, TierKind};

/// Default capacity of disk tiers without a `size`.
const DEFAULT_DISK_SIZE: u64 = 10 << 30;
/// Default capacity of a memory tier without a `size`.
const DEFAULT_MEMORY_SIZE: u64 = 256 << 20;
/// Default per-operation timeout of a remote tier.
const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(5);

/// One opened tier.
#[derive(Debug, Clone)]
pub struct OpenTier {
    pub config: TierConfig,
    /// `kind:location`, the tier's name in stats and messages.
    pub label: String,
    pub backend: Arc<dyn Backend>,
    /// The file tier's own handle, for what only it knows (when each entry was last used).
    pub fs: Option<Arc<FsBackend>>,
}

impl OpenTier {
    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::clone(&self.backend)
    }
}

/// The opened storage tiers, the in-process tier's budget and the integrity mode.
#[derive(Debug)]
pub struct Stack {
    /// Storage tiers, fastest first.
    pub tiers: Vec<OpenTier>,
    /// Byte budget of the in-process tier of loaded modules (0 when no memory tier is
    /// configured).
    pub live_bytes: u64,
    pub integrity: Integrity,
}

/// Why the stack cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("the integrity secret variable {0} is not set or empty")]
    MissingSecret(String),
    #[error("creating cache directory {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Stack {
    /// Opens every configured tier, skipping (with a warning) those that cannot be opened.
    pub fn open(settings: &Settings) -> Result<Self, StackError> {
        let integrity = match &settings.secret_env.value {
            Some(var) => match std::env::var(var) {
                Ok(secret) if !secret.is_empty() => Integrity::keyed(secret.as_bytes()),
                _ => return Err(StackError::MissingSecret(var.clone())),
            },
            None => Integrity::plain(),
        };
        let dir = &settings.cache_dir.value;
        std::fs::create_dir_all(dir).map_err(|source| StackError::CacheDir {
            path: dir.clone(),
            source,
        })?;
        let mut tiers = Vec::new();
        let mut live_bytes = 0;
        for config in &settings.tiers.value {
            if config.kind == TierKind::Memory {
                live_bytes += config.size.map_or(DEFAULT_MEMORY_SIZE, |s| s.0);
                continue;
            }
            let label = format!("{}:{}", config.kind.as_str(), config.location());
            match open_tier(config, &label) {
                Ok((backend, fs)) => tiers.push(OpenTier {
                    config: config.clone(),
                    label,
                    backend,
                    fs,
                }),
                Err(message) => tracing::warn!("skipping tier {label}: {message}"),
            }
        }
        Ok(Self {
            tiers,
            live_bytes,
            integrity,
        })
    }

    /// A module cache over these tiers.
    pub fn module_cache(&self) -> warmcache_wasmtime::ModuleCache {
        warmcache_wasmtime::ModuleCache::builder()
            .tiers(self.tiered())
            .live_bytes(self.live_bytes)
            .build()
    }

    /// A component cache over these tiers.
    pub fn component_cache(&self) -> warmcache_wasmtime::ComponentCache {
        warmcache_wasmtime::ComponentCache::builder()
            .tiers(self.tiered())
            .live_bytes(self.live_bytes)
            .build()
    }

    /// A tier stack over the opened backends (each call has its own counters and writers).
    pub fn tiered(&self) -> Tiered {
        let mut builder = Tiered::builder().integrity(self.integrity.clone());
        for tier in &self.tiers {
            let mut t = Tier::new(tier.backend()).name(tier.label.clone());
            let remote = tier.config.kind == TierKind::S3;
            let compression = match (tier.config.compression, remote) {
                (Some(CompressionSetting::Zstd), _) | (None, true) => {
                    warmcache_s3::RECOMMENDED_COMPRESSION
                }
                _ => Compression::None,
            };
            t = t.compression(compression);
            if remote {
                let timeout = tier
                    .config
                    .timeout_ms
                    .map_or(DEFAULT_REMOTE_TIMEOUT, Duration::from_millis);
                t = t
                    .background(64)
                    .timeout(timeout)
                    .circuit_breaker(3, Duration::from_secs(30));
            }
            builder = builder.tier(t);
        }
        builder.build()
    }
}

type Opened = (Arc<dyn Backend>, Option<Arc<FsBackend>>);

fn open_tier(config: &TierConfig, label: &str) -> Result<Opened, String> {
    let size = |default: u64| config.size.map_or(default, |s| s.0);
    let path = || config.path.clone().unwrap_or_default();
    match config.kind {
        TierKind::Memory => Err("a memory tier is the in-process tier, not a backend".into()),
        TierKind::Fs => FsBackend::builder(path())
            .capacity(size(DEFAULT_DISK_SIZE))
            .name(label)
            .open()
            .map(|b| {
                let fs = Arc::new(b);
                (fs.clone() as Arc<dyn Backend>, Some(fs))
            })
            .map_err(|e| e.to_string()),
        TierKind::Redb => {
            let path = path();
            match RedbBackend::builder(&path)
                .capacity(size(DEFAULT_DISK_SIZE))
                .open()
            {
                Ok(b) => Ok((Arc::new(b) as Arc<dyn Backend>, None)),
                Err(e) if e.kind() == ErrorKind::Locked => Err(match holders(&path) {
                    holders if holders.is_empty() => e.to_string(),
                    holders => format!("{e} (held by {})", holders.join(", ")),
                }),
                Err(e) => Err(e.to_string()),
            }
        }
        #[cfg(feature = "rocksdb")]
        TierKind::Rocksdb => warmcache_rocksdb::RocksDbBackend::builder(path())
            .capacity(size(DEFAULT_DISK_SIZE))
            .open()
            .map(|b| (Arc::new(b) as Arc<dyn Backend>, None))
            .map_err(|e| e.to_string()),
        #[cfg(not(feature = "rocksdb"))]
        TierKind::Rocksdb => Err(
            "this warmcache was built without RocksDB; rebuild with `--features rocksdb`".into(),
        ),
        TierKind::S3 => {
            let url = config.url.clone().unwrap_or_default();
            let timeout = config
                .timeout_ms
                .map_or(DEFAULT_REMOTE_TIMEOUT, Duration::from_millis);
            let mut builder = S3Backend::builder(url)
                .name(label)
                .allow_http(config.allow_http)
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(2))
                .retries(1, timeout);
            if let Some(endpoint) = &config.endpoint {
                builder = builder.endpoint(endpoint);
            }
            if let Some(region) = &config.region {
                builder = builder.region(region);
            }
            builder
                .build()
                .map(|b| (Arc::new(b) as Arc<dyn Backend>, None))
                .map_err(|e| e.to_string())
        }
    }
}

/// Processes (other than this one) holding `path` open, as `pid (name)`; Linux only, best
/// effort.
fn holders(path: &Path) -> Vec<String> {
    let Ok(target) = path.canonicalize() else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
        {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push(format!("process {pid} ({})", name.trim()));
        }
    }
    found
}
