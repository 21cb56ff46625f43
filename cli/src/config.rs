//! Effective settings from defaults, a TOML file, `WARMCACHE_*` variables and flags (in
//! increasing precedence), each remembering where it came from.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::size::Size;
use warmcache_wasmtime::CompileTarget;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built in.
    Default,
    /// A line of the configuration file.
    File { path: PathBuf, line: usize },
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    fn default(value: T) -> Self {
        Self {
            value,
            source: Source::Default,
        }
    }

    fn set(&mut self, value: T, source: Source) {
        *self = Self { value, source };
    }
}

/// A configuration error; messages name the file, line and key, or the variable or flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: key `{key}`: {message}")]
    File {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{origin}: {message}")]
    Value { origin: String, message: String },
    #[error(
        "no cache directory: set XDG_CACHE_HOME or HOME, `cache_dir` in the config file, \
         WARMCACHE_CACHE_DIR, or --cache-dir"
    )]
    NoCacheDir,
}

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
}

impl TierConfig {
    fn new(kind: TierKind) -> Self {
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
    fn problem(&self) -> Option<&'static str> {
        match self.kind {
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
    fn resolve(&mut self, cache_dir: &Path) {
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

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// Cranelift optimization level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptLevel {
    None,
    Speed,
    SpeedAndSize,
}

impl fmt::Display for OptLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptLevel::None => "none",
            OptLevel::Speed => "speed",
            OptLevel::SpeedAndSize => "speed_and_size",
        })
    }
}

impl FromStr for OptLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" | "0" => Ok(OptLevel::None),
            "speed" | "2" => Ok(OptLevel::Speed),
            "speed_and_size" | "s" => Ok(OptLevel::SpeedAndSize),
            _ => Err(format!(
                "unknown opt level {s:?} (expected none, speed or speed_and_size)"
            )),
        }
    }
}

/// Engine settings that change compiled code (and so are part of every key).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub opt_level: Sourced<OptLevel>,
    pub simd: Sourced<bool>,
    pub fuel: Sourced<bool>,
    pub epochs: Sourced<bool>,
    pub debug_info: Sourced<bool>,
    /// Compile for this target triple instead of the host, with no CPU feature inferred from
    /// the host (keys then derive from the target and settings, so nodes configured the same
    /// way find the entries).
    pub target: Sourced<Option<String>>,
    /// Cranelift settings as `NAME=VALUE` (`wasmtime compile --cranelift-set`), such as
    /// `has_avx2=true`; only with a target.
    pub cranelift_set: Sourced<Vec<String>>,
}

impl EngineSettings {
    /// The explicit compile target, when one is configured.
    #[allow(unsafe_code)] // Cranelift settings, as `wasmtime compile --cranelift-set` takes them.
    pub fn compile_target(&self) -> Result<Option<CompileTarget>, String> {
        let Some(triple) = &self.target.value else {
            if let Some(first) = self.cranelift_set.value.first() {
                return Err(format!(
                    "cranelift setting {first:?} ({}) needs a target: set `target` too (the                      host's is {})",
                    self.cranelift_set.source,
                    CompileTarget::host_triple()
                ));
            }
            return Ok(None);
        };
        let mut target =
            CompileTarget::new(triple).map_err(|e| format!("{e} ({})", self.target.source))?;
        // SAFETY: the standard optimisation levels are always valid.
        target = unsafe { target.setting("opt_level", &self.opt_level.value.to_string()) };
        for item in &self.cranelift_set.value {
            let (name, value) =
                cranelift_pair(item).map_err(|e| format!("{e} ({})", self.cranelift_set.source))?;
            // SAFETY: as `wasmtime compile --cranelift-set`: the operator chose these settings
            // for the machines the code runs on; wasmtime checks CPU features on load.
            target = unsafe { target.setting(&name, &value) };
        }
        Ok(Some(target))
    }

    /// The wasmtime configuration for these settings: with a target, compiling for it.
    pub fn wasmtime_config(&self) -> Result<wasmtime::Config, String> {
        let base = self.base_config();
        match self.compile_target()? {
            Some(target) => target.compiling_config(&base).map_err(|e| e.to_string()),
            None => {
                let mut config = base;
                config.cranelift_opt_level(match self.opt_level.value {
                    OptLevel::None => wasmtime::OptLevel::None,
                    OptLevel::Speed => wasmtime::OptLevel::Speed,
                    OptLevel::SpeedAndSize => wasmtime::OptLevel::SpeedAndSize,
                });
                Ok(config)
            }
        }
    }

    /// The key to pin for engines of these settings: with a target, the explicit one that
    /// engines with and without a compiler share.
    pub fn pinned_key(&self) -> Result<Option<warmcache_wasmtime::EngineKey>, String> {
        match self.compile_target()? {
            Some(target) => target
                .engine_key(&self.base_config())
                .map(Some)
                .map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    /// Everything but the compiler's settings.
    fn base_config(&self) -> wasmtime::Config {
        let mut config = wasmtime::Config::new();
        config
            .wasm_relaxed_simd(self.simd.value)
            .wasm_simd(self.simd.value)
            .consume_fuel(self.fuel.value)
            .epoch_interruption(self.epochs.value)
            .debug_info(self.debug_info.value);
        config
    }
}

/// Parses `NAME=VALUE`.
pub fn cranelift_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!(
            "expected a cranelift setting as NAME=VALUE (such as has_avx2=true), got {s:?}"
        )),
    }
}

/// Everything a command needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file read, if any.
    pub config_file: Option<PathBuf>,
    pub cache_dir: Sourced<PathBuf>,
    pub tiers: Sourced<Vec<TierConfig>>,
    /// Name of the environment variable holding the integrity secret (MAC key) of every tier.
    pub secret_env: Sourced<Option<String>>,
    /// Names of environment variables holding earlier secrets, still accepted when reading (a
    /// rotation); entries are sealed with `secret_env`'s only.
    pub previous_secret_envs: Sourced<Vec<String>>,
    /// The PKCS#8 PEM file of the Ed25519 key this host signs entries with (a producer).
    pub signing_key_file: Sourced<Option<PathBuf>>,
    /// Name of the environment variable holding that key's PEM instead of a file.
    pub signing_key_env: Sourced<Option<String>>,
    /// Public keys (`ed25519:HEX`, or `ID=ed25519:HEX`) whose signatures the bucket's entries
    /// must carry. With these or a signing key, the bucket is a signed tier.
    pub trusted_keys: Sourced<Vec<String>>,
    /// Key ids whose signatures are refused on every tier, valid or not.
    pub revoked_keys: Sourced<Vec<String>>,
    /// What a host without a signing key does when the bucket has no signed entry.
    pub on_shared_miss: Sourced<OnSharedMissSetting>,
    /// Allow a shared (remote) tier without a secret. Anyone who can write the bucket can then
    /// make every node run their code.
    pub insecure_shared: Sourced<bool>,
    /// Coordinate cold compiles with other processes and hosts through leases in tiers that
    /// offer them (the file tier's lock files, the bucket's lease objects).
    pub coordinate: Sourced<bool>,
    /// Verify an entry file in full on every load (the default). When false, a file tier's
    /// entry file that verified once is loaded without hashing it again while its identity
    /// (device, inode, size, times) is unchanged: see `warmcache_core::VerifiedFiles` for what
    /// that gives up.
    pub verify_every_load: Sourced<bool>,
    /// Whether file-tier entries are loaded from sealed in-memory copies instead of mappings,
    /// so that a process of the same user writing to an entry file cannot change code after it
    /// verified: see `warmcache_core::Tier::sealed_copies`.
    pub sealed_loads: Sourced<bool>,
    /// How long a process waits for another's compile of the same module before compiling
    /// itself, in milliseconds.
    pub coordination_wait_ms: Sourced<u64>,
    /// How long a bucket lease lives without renewal, in milliseconds: how long a node that died
    /// mid-compile keeps the others waiting.
    pub lease_ttl_ms: Sourced<u64>,
    /// How much older than its record a wasm file's times must be for the input memo to trust
    /// the record, in milliseconds: raise it where files change without their times moving
    /// at once (writes through a shared mapping, a network filesystem's clock).
    pub input_racy_window_ms: Sourced<u64>,
    pub engine: EngineSettings,
}

/// Settings given on the command line (`None` when not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub tiers: Option<String>,
    pub secret_env: Option<String>,
    pub opt_level: Option<OptLevel>,
    pub simd: Option<bool>,
    pub fuel: Option<bool>,
    pub epochs: Option<bool>,
    pub debug_info: Option<bool>,
    pub target: Option<String>,
    pub cranelift_set: Vec<String>,
}

/// `on_shared_miss`: what a consumer (no signing key) does when the bucket has no signed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSharedMissSetting {
    /// Compile here and keep the artifact in the local tiers.
    #[default]
    Compile,
    /// Wait (up to `coordination_wait_ms`) for a producer to store it, then compile.
    Wait,
    /// Fail with a clear error: the host never compiles.
    Fail,
}

impl std::str::FromStr for OnSharedMissSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "compile" => Ok(Self::Compile),
            "wait" => Ok(Self::Wait),
            "fail" => Ok(Self::Fail),
            other => Err(format!("expected compile, wait or fail, got {other:?}")),
        }
    }
}

impl std::fmt::Display for OnSharedMissSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Compile => "compile",
            Self::Wait => "wait",
            Self::Fail => "fail",
        })
    }
}

/// Checks every entry of a `trusted_keys` list, naming the first that is not a public key.
fn check_trusted_keys(keys: &[String]) -> Result<(), String> {
    for key in keys {
        key.parse::<warmcache_core::PublicKey>()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A comma-separated list, trimmed, without empty items.
fn list_value(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    cache_dir: Option<Spanned<PathBuf>>,
    secret_env: Option<Spanned<String>>,
    previous_secret_envs: Option<Spanned<Vec<String>>>,
    signing_key_file: Option<Spanned<PathBuf>>,
    signing_key_env: Option<Spanned<String>>,
    trusted_keys: Option<Spanned<Vec<String>>>,
    revoked_keys: Option<Spanned<Vec<String>>>,
    on_shared_miss: Option<Spanned<OnSharedMissSetting>>,
    insecure_shared: Option<Spanned<bool>>,
    coordinate: Option<Spanned<bool>>,
    verify_every_load: Option<Spanned<bool>>,
    sealed_loads: Option<Spanned<bool>>,
    coordination_wait_ms: Option<Spanned<u64>>,
    lease_ttl_ms: Option<Spanned<u64>>,
    input_racy_window_ms: Option<Spanned<u64>>,
    engine: Option<FileEngine>,
    tiers: Option<Spanned<Vec<Spanned<TierConfig>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEngine {
    opt_level: Option<Spanned<OptLevel>>,
    simd: Option<Spanned<bool>>,
    fuel: Option<Spanned<bool>>,
    epochs: Option<Spanned<bool>>,
    debug_info: Option<Spanned<bool>>,
    target: Option<Spanned<String>>,
    cranelift_set: Option<Spanned<Vec<String>>>,
}

/// Reads the environment through a function, so tests can supply their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The real environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The default cache directory: `$XDG_CACHE_HOME/warmcache`, else `~/.cache/warmcache`.
fn default_cache_dir(env: Env<'_>) -> Option<PathBuf> {
    env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("warmcache"))
}

/// The configuration file to read: `--config`, else `WARMCACHE_CONFIG`, else
/// `$XDG_CONFIG_HOME/warmcache/config.toml` (or `~/.config/...`) when it exists.
fn config_path(flags: &Flags, env: Env<'_>) -> Option<(PathBuf, bool)> {
    if let Some(path) = &flags.config {
        return Some((path.clone(), true));
    }
    if let Some(path) = env("WARMCACHE_CONFIG") {
        return Some((PathBuf::from(path), true));
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let path = base.join("warmcache").join("config.toml");
    path.exists().then_some((path, false))
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

fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// The key on the line holding `span`: the text before `=`, or the table header.
fn key_at(text: &str, span: &Range<usize>) -> String {
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) => key.trim().trim_matches('"').to_owned(),
        None => line.trim().to_owned(),
    }
}

fn bool_value(origin: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Value {
            origin: origin.to_owned(),
            message: format!("expected true or false, got {value:?}"),
        }),
    }
}

impl Settings {
    /// Loads the settings: defaults, then the file, then `env`, then `flags`.
    pub fn load(flags: &Flags, env: Env<'_>) -> Result<Self, ConfigError> {
        let mut settings = Settings {
            config_file: None,
            cache_dir: Sourced::default(PathBuf::new()),
            tiers: Sourced::default(default_tiers()),
            secret_env: Sourced::default(None),
            previous_secret_envs: Sourced::default(Vec::new()),
            signing_key_file: Sourced::default(None),
            signing_key_env: Sourced::default(None),
            trusted_keys: Sourced::default(Vec::new()),
            revoked_keys: Sourced::default(Vec::new()),
            on_shared_miss: Sourced::default(OnSharedMissSetting::Compile),
            insecure_shared: Sourced::default(false),
            coordinate: Sourced::default(true),
            verify_every_load: Sourced::default(true),
            sealed_loads: Sourced::default(false),
            coordination_wait_ms: Sourced::default(duration_ms(
                warmcache_core::Coordination::DEFAULT_WAIT,
            )),
            lease_ttl_ms: Sourced::default(duration_ms(warmcache_core::Coordination::DEFAULT_TTL)),
            input_racy_window_ms: Sourced::default(duration_ms(warmcache_core::files::RACY_WINDOW)),
            engine: EngineSettings {
                opt_level: Sourced::default(OptLevel::Speed),
                simd: Sourced::default(true),
                fuel: Sourced::default(false),
                epochs: Sourced::default(false),
                debug_info: Sourced::default(false),
                target: Sourced::default(None),
                cranelift_set: Sourced::default(Vec::new()),
            },
        };
        let default_dir = default_cache_dir(env);
        if let Some((path, explicit)) = config_path(flags, env) {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    settings.apply_file(&path, &text)?;
                    settings.config_file = Some(path);
                }
                Err(e) if explicit || e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ConfigError::Read { path, source: e });
                }
                Err(_) => {}
            }
        }
        settings.apply_env(env)?;
        settings.apply_flags(flags);
        if settings.cache_dir.value.as_os_str().is_empty() {
            let dir = default_dir.ok_or(ConfigError::NoCacheDir)?;
            settings.cache_dir.value = dir;
        }
        settings.cache_dir.value = expand_home(&settings.cache_dir.value);
        let cache_dir = settings.cache_dir.value.clone();
        for tier in &mut settings.tiers.value {
            tier.resolve(&cache_dir);
        }
        Ok(settings)
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ConfigError::File {
                path: path.to_owned(),
                line: line_of(text, &span),
                key: key_at(text, &span),
                message: e.message().trim().to_owned(),
            }
        })?;
        let at = |span: Range<usize>| Source::File {
            path: path.to_owned(),
            line: line_of(text, &span),
        };
        if let Some(dir) = file.cache_dir {
            self.cache_dir.set(dir.get_ref().clone(), at(dir.span()));
        }
        if let Some(var) = file.secret_env {
            self.secret_env
                .set(Some(var.get_ref().clone()), at(var.span()));
        }
        if let Some(vars) = file.previous_secret_envs {
            self.previous_secret_envs
                .set(vars.get_ref().clone(), at(vars.span()));
        }
        if let Some(path) = file.signing_key_file {
            self.signing_key_file
                .set(Some(expand_home(path.get_ref())), at(path.span()));
        }
        if let Some(var) = file.signing_key_env {
            self.signing_key_env
                .set(Some(var.get_ref().clone()), at(var.span()));
        }
        if let Some(keys) = file.trusted_keys {
            check_trusted_keys(keys.get_ref()).map_err(|message| ConfigError::File {
                path: path.to_owned(),
                line: line_of(text, &keys.span()),
                key: "trusted_keys".to_owned(),
                message,
            })?;
            self.trusted_keys
                .set(keys.get_ref().clone(), at(keys.span()));
        }
        if let Some(ids) = file.revoked_keys {
            self.revoked_keys.set(ids.get_ref().clone(), at(ids.span()));
        }
        if let Some(on) = file.on_shared_miss {
            self.on_shared_miss.set(*on.get_ref(), at(on.span()));
        }
        if let Some(allow) = file.insecure_shared {
            self.insecure_shared.set(*allow.get_ref(), at(allow.span()));
        }
        if let Some(on) = file.coordinate {
            self.coordinate.set(*on.get_ref(), at(on.span()));
        }
        if let Some(on) = file.verify_every_load {
            self.verify_every_load.set(*on.get_ref(), at(on.span()));
        }
        if let Some(on) = file.sealed_loads {
            self.sealed_loads.set(*on.get_ref(), at(on.span()));
        }
        for (slot, value, key) in [
            (
                &mut self.coordination_wait_ms,
                file.coordination_wait_ms,
                "coordination_wait_ms",
            ),
            (&mut self.lease_ttl_ms, file.lease_ttl_ms, "lease_ttl_ms"),
            (
                &mut self.input_racy_window_ms,
                file.input_racy_window_ms,
                "input_racy_window_ms",
            ),
        ] {
            if let Some(ms) = value {
                if *ms.get_ref() == 0 {
                    return Err(ConfigError::File {
                        path: path.to_owned(),
                        line: line_of(text, &ms.span()),
                        key: key.to_owned(),
                        message: "must be at least 1 millisecond".to_owned(),
                    });
                }
                slot.set(*ms.get_ref(), at(ms.span()));
            }
        }
        if let Some(tiers) = file.tiers {
            let span = tiers.span();
            let mut list = Vec::new();
            for tier in tiers.into_inner() {
                let tier_span = tier.span();
                let tier = tier.into_inner();
                if let Some(problem) = tier.problem() {
                    return Err(ConfigError::File {
                        path: path.to_owned(),
                        line: line_of(text, &tier_span),
                        key: "tiers".to_owned(),
                        message: problem.to_owned(),
                    });
                }
                list.push(tier);
            }
            self.tiers.set(list, at(span));
        }
        if let Some(engine) = file.engine {
            let e = &mut self.engine;
            if let Some(v) = engine.opt_level {
                e.opt_level.set(*v.get_ref(), at(v.span()));
            }
            if let Some(v) = engine.target {
                e.target.set(Some(v.get_ref().clone()), at(v.span()));
            }
            if let Some(v) = engine.cranelift_set {
                for item in v.get_ref() {
                    if let Err(message) = cranelift_pair(item) {
                        return Err(ConfigError::File {
                            path: path.to_owned(),
                            line: line_of(text, &v.span()),
                            key: "cranelift_set".to_owned(),
                            message,
                        });
                    }
                }
                e.cranelift_set.set(v.get_ref().clone(), at(v.span()));
            }
            for (slot, value) in [
                (&mut e.simd, engine.simd),
                (&mut e.fuel, engine.fuel),
                (&mut e.epochs, engine.epochs),
                (&mut e.debug_info, engine.debug_info),
            ] {
                if let Some(v) = value {
                    slot.set(*v.get_ref(), at(v.span()));
                }
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, env: Env<'_>) -> Result<(), ConfigError> {
        let origin = |var: &str| format!("environment {var}");
        if let Some(dir) = env("WARMCACHE_CACHE_DIR") {
            self.cache_dir
                .set(PathBuf::from(dir), Source::Env("WARMCACHE_CACHE_DIR"));
        }
        if let Some(var) = env("WARMCACHE_SECRET_ENV") {
            self.secret_env
                .set(Some(var), Source::Env("WARMCACHE_SECRET_ENV"));
        }
        if let Some(vars) = env("WARMCACHE_PREVIOUS_SECRET_ENVS") {
            let vars = vars
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            self.previous_secret_envs
                .set(vars, Source::Env("WARMCACHE_PREVIOUS_SECRET_ENVS"));
        }
        if let Some(path) = env("WARMCACHE_SIGNING_KEY_FILE") {
            self.signing_key_file.set(
                Some(PathBuf::from(path)),
                Source::Env("WARMCACHE_SIGNING_KEY_FILE"),
            );
        }
        if let Some(var) = env("WARMCACHE_SIGNING_KEY_ENV") {
            self.signing_key_env
                .set(Some(var), Source::Env("WARMCACHE_SIGNING_KEY_ENV"));
        }
        if let Some(keys) = env("WARMCACHE_TRUSTED_KEYS") {
            let var = "WARMCACHE_TRUSTED_KEYS";
            let keys = list_value(&keys);
            check_trusted_keys(&keys).map_err(|message| ConfigError::Value {
                origin: origin(var),
                message,
            })?;
            self.trusted_keys.set(keys, Source::Env(var));
        }
        if let Some(ids) = env("WARMCACHE_REVOKED_KEYS") {
            self.revoked_keys
                .set(list_value(&ids), Source::Env("WARMCACHE_REVOKED_KEYS"));
        }
        if let Some(value) = env("WARMCACHE_ON_SHARED_MISS") {
            let var = "WARMCACHE_ON_SHARED_MISS";
            let on = value.parse().map_err(|message| ConfigError::Value {
                origin: origin(var),
                message,
            })?;
            self.on_shared_miss.set(on, Source::Env(var));
        }
        if let Some(value) = env("WARMCACHE_INSECURE_SHARED") {
            let var = "WARMCACHE_INSECURE_SHARED";
            self.insecure_shared
                .set(bool_value(&origin(var), &value)?, Source::Env(var));
        }
        if let Some(value) = env("WARMCACHE_COORDINATE") {
            let var = "WARMCACHE_COORDINATE";
            self.coordinate
                .set(bool_value(&origin(var), &value)?, Source::Env(var));
        }
        if let Some(value) = env("WARMCACHE_VERIFY_EVERY_LOAD") {
            let var = "WARMCACHE_VERIFY_EVERY_LOAD";
            self.verify_every_load
                .set(bool_value(&origin(var), &value)?, Source::Env(var));
        }
        if let Some(value) = env("WARMCACHE_SEALED_LOADS") {
            let var = "WARMCACHE_SEALED_LOADS";
            self.sealed_loads
                .set(bool_value(&origin(var), &value)?, Source::Env(var));
        }
        for (slot, var) in [
            (
                &mut self.coordination_wait_ms,
                "WARMCACHE_COORDINATION_WAIT_MS",
            ),
            (&mut self.lease_ttl_ms, "WARMCACHE_LEASE_TTL_MS"),
            (
                &mut self.input_racy_window_ms,
                "WARMCACHE_INPUT_RACY_WINDOW_MS",
            ),
        ] {
            if let Some(value) = env(var) {
                let ms = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| ConfigError::Value {
                        origin: origin(var),
                        message: format!(
                            "expected a number of milliseconds (1 or more), got {value:?}"
                        ),
                    })?;
                slot.set(ms, Source::Env(var));
            }
        }
        if let Some(spec) = env("WARMCACHE_TIERS") {
            let tiers = parse_tier_list(&spec).map_err(|message| ConfigError::Value {
                origin: origin("WARMCACHE_TIERS"),
                message,
            })?;
            self.tiers.set(tiers, Source::Env("WARMCACHE_TIERS"));
        }
        if let Some(level) = env("WARMCACHE_OPT_LEVEL") {
            let level = level.parse().map_err(|message| ConfigError::Value {
                origin: origin("WARMCACHE_OPT_LEVEL"),
                message,
            })?;
            self.engine
                .opt_level
                .set(level, Source::Env("WARMCACHE_OPT_LEVEL"));
        }
        if let Some(triple) = env("WARMCACHE_TARGET") {
            self.engine
                .target
                .set(Some(triple), Source::Env("WARMCACHE_TARGET"));
        }
        if let Some(list) = env("WARMCACHE_CRANELIFT_SET") {
            let var = "WARMCACHE_CRANELIFT_SET";
            let items: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            for item in &items {
                cranelift_pair(item).map_err(|message| ConfigError::Value {
                    origin: origin(var),
                    message,
                })?;
            }
            self.engine.cranelift_set.set(items, Source::Env(var));
        }
        let e = &mut self.engine;
        for (slot, var) in [
            (&mut e.simd, "WARMCACHE_SIMD"),
            (&mut e.fuel, "WARMCACHE_FUEL"),
            (&mut e.epochs, "WARMCACHE_EPOCHS"),
            (&mut e.debug_info, "WARMCACHE_DEBUG_INFO"),
        ] {
            if let Some(value) = env(var) {
                slot.set(bool_value(&origin(var), &value)?, Source::Env(var));
            }
        }
        Ok(())
    }

    fn apply_flags(&mut self, flags: &Flags) {
        if let Some(dir) = &flags.cache_dir {
            self.cache_dir.set(dir.clone(), Source::Flag("--cache-dir"));
        }
        if let Some(var) = &flags.secret_env {
            self.secret_env
                .set(Some(var.clone()), Source::Flag("--secret-env"));
        }
        if let Some(spec) = &flags.tiers {
            // Parsed (and refused) by clap already; see `parse_tier_list`.
            if let Ok(tiers) = parse_tier_list(spec) {
                self.tiers.set(tiers, Source::Flag("--tiers"));
            }
        }
        let e = &mut self.engine;
        if let Some(level) = flags.opt_level {
            e.opt_level.set(level, Source::Flag("--opt-level"));
        }
        if let Some(triple) = &flags.target {
            e.target.set(Some(triple.clone()), Source::Flag("--target"));
        }
        if !flags.cranelift_set.is_empty() {
            e.cranelift_set
                .set(flags.cranelift_set.clone(), Source::Flag("--cranelift-set"));
        }
        for (slot, value, flag) in [
            (&mut e.simd, flags.simd, "--simd"),
            (&mut e.fuel, flags.fuel, "--fuel"),
            (&mut e.epochs, flags.epochs, "--epochs"),
            (&mut e.debug_info, flags.debug_info, "--debug-info"),
        ] {
            if let Some(value) = value {
                slot.set(value, Source::Flag(flag));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_without_any_configuration() {
        let env = env_of(&[("HOME", "/home/u")]);
        let s = Settings::load(&Flags::default(), &env).unwrap();
        assert_eq!(s.cache_dir.value, PathBuf::from("/home/u/.cache/warmcache"));
        assert_eq!(s.tiers.value.len(), 2);
        assert_eq!(s.tiers.value[0].kind, TierKind::Memory);
        assert_eq!(
            s.tiers.value[1].path.as_deref(),
            Some(Path::new("/home/u/.cache/warmcache/files"))
        );
        assert_eq!(s.config_file, None);
        let env = env_of(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]);
        let s = Settings::load(&Flags::default(), &env).unwrap();
        assert_eq!(s.cache_dir.value, PathBuf::from("/xdg/warmcache"));
    }

    #[test]
    fn tier_lists() {
        let tiers = parse_tier_list("memory=64MiB, fs, redb=/x/db.redb ,s3=s3://b/p").unwrap();
        assert_eq!(tiers.len(), 4);
        assert_eq!(tiers[0].size, Some(Size(64 << 20)));
        assert_eq!(tiers[2].path.as_deref(), Some(Path::new("/x/db.redb")));
        assert_eq!(tiers[3].url.as_deref(), Some("s3://b/p"));
        assert!(
            parse_tier_list("floppy")
                .unwrap_err()
                .contains("unknown tier kind")
        );
        assert!(
            parse_tier_list("memory=12XB")
                .unwrap_err()
                .contains("malformed size")
        );
        assert!(parse_tier_list("s3").unwrap_err().contains("needs `url`"));
        assert!(parse_tier_list("").is_err());
        let dav = parse_tier_list("fs,http=https://dav.example.com/cache").unwrap();
        assert_eq!(dav[1].kind, TierKind::Http);
        assert!(dav[1].kind.is_remote());
        assert!(parse_tier_list("http").unwrap_err().contains("needs `url`"));
        let err = parse_tier_list("http=s3://b/p").unwrap_err();
        assert!(err.contains("http:// or https://"), "{err}");
        let err = parse_tier_list("s3=https://dav.example.com/cache").unwrap_err();
        assert!(err.contains("kind \"http\""), "{err}");
    }

    fn file_error(text: &str) -> String {
        let mut s = Settings::load(&Flags::default(), &env_of(&[("HOME", "/h")])).unwrap();
        s.apply_file(Path::new("/etc/w.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn file_errors_name_the_file_line_and_key() {
        let err = file_error("[[tiers]]\nkind = \"floppy\"\n");
        assert!(err.starts_with("/etc/w.toml:2: key `kind`:"), "{err}");
        assert!(err.contains("floppy"), "{err}");
        let err = file_error(
            "[[tiers]]\nkind = \"fs\"\n\n[[tiers]]\nkind = \"memory\"\nsize = \"12XB\"\n",
        );
        assert!(err.starts_with("/etc/w.toml:6: key `size`:"), "{err}");
        assert!(err.contains("malformed size"), "{err}");
        let err = file_error("[engine]\nturbo = true\n");
        assert!(err.starts_with("/etc/w.toml:2: key `turbo`:"), "{err}");
        let err = file_error("[[tiers]]\nkind = \"s3\"\n");
        assert!(err.contains("needs `url`"), "{err}");
    }
}
