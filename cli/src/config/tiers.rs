//! The tiers setting: kinds, a tier's options, and the compact `kind[+ro][=arg],...` list.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warmcache_core::backend::Eviction;

use super::expand_home;
use crate::size::Size;

/// Kinds of tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TierKind {
    /// In-process memory.
    Memory,
    /// One file per entry, loaded through mmap (`warmcache-fs`).
    Fs,
    /// A redb database file.
    Redb,
    /// A RocksDB directory (the `rocksdb` cargo feature).
    Rocksdb,
    /// An object store URL: `s3://`, `gs://`, `az://`, `file://`, `memory://`.
    S3,
    /// A WebDAV server at an `http://` or `https://` URL (nginx's dav module, Apache's mod_dav).
    Http,
}

impl TierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TierKind::Memory => "memory",
            TierKind::Fs => "fs",
            TierKind::Redb => "redb",
            TierKind::Rocksdb => "rocksdb",
            TierKind::S3 => "s3",
            TierKind::Http => "http",
        }
    }

    /// Whether the tier is reached over the network (shared with other hosts).
    pub fn is_remote(self) -> bool {
        matches!(self, TierKind::S3 | TierKind::Http)
    }

    fn parse(s: &str) -> Option<Self> {
        [
            TierKind::Memory,
            TierKind::Fs,
            TierKind::Redb,
            TierKind::Rocksdb,
            TierKind::S3,
            TierKind::Http,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Compression of entries in a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionSetting {
    None,
    Zstd,
}

/// One tier as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// `memory`, `fs`, `redb`, `rocksdb`, `s3` or `http`.
    pub kind: TierKind,
    /// Directory or file of a disk tier (default under the cache directory; relative paths are
    /// relative to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Object store URL of a remote tier (`s3://...` and the other object stores for `s3`,
    /// `http(s)://...` for `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// S3 endpoint (for S3-compatible servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allow plain HTTP endpoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
    /// Entry compression (default: zstd for remote tiers, none for local ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionSetting>,
    /// Per-operation timeout of a remote tier, in milliseconds (default 5000; a put also gets
    /// the time its size takes at 1 MiB/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Never write this tier: read it, skip (never delete) bad entries in it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Jobs the background upload queue of a remote tier holds (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<usize>,
    /// What a disk tier evicts first: `lru` or `cost` (the default, see [`Eviction`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction: Option<Eviction>,
}

impl TierConfig {
    pub(super) fn new(kind: TierKind) -> Self {
        Self {
            kind,
            path: None,
            size: None,
            url: None,
            endpoint: None,
            region: None,
            allow_http: false,
            compression: None,
            timeout_ms: None,
            read_only: false,
            queue: None,
            eviction: None,
        }
    }

    /// The tier's location for messages, labels and files: a path, a URL with any credentials
    /// in it redacted, or `memory`.
    pub fn location(&self) -> String {
        match (&self.path, &self.url) {
            (Some(path), _) => path.display().to_string(),
            (_, Some(url)) => warmcache_s3::redact(url),
            _ => self.kind.as_str().to_owned(),
        }
    }

    /// This tier with credentials in its URL and endpoint redacted, for `config` output.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        shown.url = self.url.as_deref().map(warmcache_s3::redact);
        shown.endpoint = self.endpoint.as_deref().map(warmcache_s3::redact);
        shown
    }

    /// Checks options against the kind; `None` when fine.
    pub(super) fn problem(&self) -> Option<&'static str> {
        match self.kind {
            TierKind::Memory | TierKind::S3 | TierKind::Http if self.eviction.is_some() => Some(
                "`eviction` is for fs, redb and rocksdb tiers (the memory tier evicts by \
                 quick_cache's policy, a bucket by its lifecycle rules)",
            ),
            TierKind::S3 if self.url.is_none() => Some("an s3 tier needs `url`"),
            TierKind::Http if self.url.is_none() => Some("an http tier needs `url`"),
            TierKind::S3 if self.url.as_deref().is_some_and(is_http) => Some(
                "an s3 tier's url is s3://bucket/prefix (with `endpoint` for an S3-compatible \
                 server); for a WebDAV server at an http(s):// URL, use kind \"http\"",
            ),
            TierKind::Http if !self.url.as_deref().is_some_and(is_http) => {
                Some("an http tier's url starts with http:// or https://")
            }
            TierKind::S3 | TierKind::Http => None,
            _ if self.url.is_some() => Some("`url` is only for s3 and http tiers"),
            TierKind::Memory if self.path.is_some() => Some("a memory tier has no `path`"),
            _ => None,
        }
    }

    /// Fills in default paths and makes relative ones relative to `cache_dir`.
    pub(super) fn resolve(&mut self, cache_dir: &Path) {
        let default = match self.kind {
            TierKind::Fs => Some("files"),
            TierKind::Redb => Some("cache.redb"),
            TierKind::Rocksdb => Some("rocksdb"),
            TierKind::Memory | TierKind::S3 | TierKind::Http => None,
        };
        if let Some(default) = default {
            let path = self.path.take().unwrap_or_else(|| PathBuf::from(default));
            self.path = Some(cache_dir.join(expand_home(&path)));
        }
    }
}

fn is_http(url: &str) -> bool {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("http" | "https"))
}

/// The default tiers: memory, then the file tier (mmap warm starts measured fastest).
pub fn default_tiers() -> Vec<TierConfig> {
    let mut memory = TierConfig::new(TierKind::Memory);
    memory.size = Some(Size(256 << 20));
    vec![memory, TierConfig::new(TierKind::Fs)]
}

/// Parses a compact tier list: `kind[+ro][=arg],...` where `arg` is a size for `memory`, a path
/// for `fs`, `redb` and `rocksdb`, and a URL for `s3`, and `+ro` makes the tier read-only. For
/// example `memory=64MiB,fs,s3+ro=s3://b/p`.
pub fn parse_tier_list(spec: &str) -> Result<Vec<TierConfig>, String> {
    let mut tiers = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (kind, arg) = match item.split_once('=') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (item, None),
        };
        let (kind, read_only) = match kind.split_once('+') {
            Some((kind, "ro")) => (kind, true),
            Some((_, option)) => {
                return Err(format!("unknown tier option +{option} (expected +ro)"));
            }
            None => (kind, false),
        };
        let kind = TierKind::parse(kind).ok_or_else(|| {
            format!("unknown tier kind {kind:?} (expected memory, fs, redb, rocksdb, s3 or http)")
        })?;
        let mut tier = TierConfig::new(kind);
        tier.read_only = read_only;
        match (kind, arg) {
            (_, None) => {}
            (TierKind::Memory, Some(size)) => {
                tier.size = Some(size.parse().map_err(|e| format!("{e}"))?);
            }
            (TierKind::S3 | TierKind::Http, Some(url)) => tier.url = Some(url.to_owned()),
            (_, Some(path)) => tier.path = Some(PathBuf::from(path)),
        }
        if let Some(problem) = tier.problem() {
            return Err(problem.to_owned());
        }
        tiers.push(tier);
    }
    if tiers.is_empty() {
        return Err("no tiers listed".to_owned());
    }
    Ok(tiers)
}
