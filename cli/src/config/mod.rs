//! Effective settings from defaults, a TOML file, `WARMCACHE_*` variables and flags (in
//! increasing precedence), each remembering where it came from.
//!
//! `table.rs` lists every setting once (its file key, flag, variable and help) and parses its
//! text; `file.rs` reads the file layer, clap the variables and flags; `tiers.rs` and
//! `engine.rs` hold the settings with structure of their own.

mod engine;
mod file;
mod table;
mod tiers;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::size::Size;

pub use engine::{EngineSettings, OptLevel};
pub use table::{SETTINGS, args};
pub use tiers::{CompressionSetting, TierConfig, TierKind};

/// How long a failed compile is remembered by default: long enough that a fleet or a retry
/// loop does not compile a bad module again and again, short enough that a failure with a
/// passing cause (memory pressure) is soon tried again.
const REMEMBER_FAILURES: std::time::Duration = std::time::Duration::from_secs(600);

/// The compile worker's address space by default: room for the largest real modules (a 75 MB
/// LLVM build compiles in a few GiB), not for a compile bomb.
const COMPILE_MEMORY: Size = Size(8 << 30);

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
            Source::Flag(flag) => write!(f, "flag --{flag}"),
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

    /// The value as text, and where it came from.
    fn shown(&self) -> (String, &Source)
    where
        T: fmt::Display,
    {
        (self.value.to_string(), &self.source)
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

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
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
    /// How long a failed compile is remembered, in milliseconds (0: not remembered): the next
    /// run of the same module, in any process sharing a tier, reports the failure without
    /// compiling again.
    pub remember_failures_ms: Sourced<u64>,
    /// Compile in a worker process (this program) under the limits below, so a module that
    /// takes too long or too much memory to compile costs the worker, never this process.
    pub isolate_compiles: Sourced<bool>,
    /// The worker's wall-time limit per compile, in milliseconds.
    pub compile_timeout_ms: Sourced<u64>,
    /// The worker's address-space limit (0: none).
    pub compile_memory: Sourced<Size>,
    pub engine: EngineSettings,
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

impl Settings {
    /// Loads the settings: defaults, then the file (`config`, or the default one when it
    /// exists), then the variables and flags in `matches` (built with [`args`]).
    pub fn load(
        config: Option<&Path>,
        matches: &clap::ArgMatches,
        env: Env<'_>,
    ) -> Result<Self, ConfigError> {
        let mut settings = Settings {
            config_file: None,
            cache_dir: Sourced::default(PathBuf::new()),
            tiers: Sourced::default(tiers::default_tiers()),
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
            remember_failures_ms: Sourced::default(duration_ms(REMEMBER_FAILURES)),
            isolate_compiles: Sourced::default(true),
            compile_timeout_ms: Sourced::default(duration_ms(
                warmcache_wasmtime::Isolation::DEFAULT_TIMEOUT,
            )),
            compile_memory: Sourced::default(COMPILE_MEMORY),
            engine: EngineSettings {
                opt_level: Sourced::default(OptLevel::Speed),
                simd: Sourced::default(true),
                fuel: Sourced::default(false),
                epochs: Sourced::default(false),
                debug_info: Sourced::default(false),
                target: Sourced::default(None),
                cranelift_set: Sourced::default(Vec::new()),
                cpu_level: Sourced::default(None),
                native_first: Sourced::default(false),
                cold_start: Sourced::default(engine::ColdStart::Optimized),
            },
        };
        let default_dir = default_cache_dir(env);
        if let Some((path, named)) = file::config_path(config, env) {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    settings.apply_file(&path, &text)?;
                    settings.config_file = Some(path);
                }
                Err(e) if named || e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ConfigError::Read { path, source: e });
                }
                Err(_) => {}
            }
        }
        settings.apply_args(matches)?;
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
}

#[cfg(test)]
mod tests {
    use super::tiers::parse_tier_list;
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    /// Nothing on the command line (clap still reads the process's `WARMCACHE_*` variables).
    fn no_args() -> clap::ArgMatches {
        clap::Command::new("warmcache")
            .args(args())
            .get_matches_from(["warmcache"])
    }

    #[test]
    fn every_setting_in_the_table_is_parsed_and_shown() {
        let mut s = Settings::load(None, &no_args(), &env_of(&[("HOME", "/h")])).unwrap();
        for spec in SETTINGS {
            let err = s.set(spec, Vec::new(), Source::Default).err();
            assert!(
                err.as_deref().is_none_or(|e| e.contains("needs a value")),
                "{}: {err:?}",
                spec.key
            );
            assert!(spec.key.starts_with("engine.") == spec.key.contains('.'));
            let (_, source) = s.show(spec);
            assert_eq!(*source, Source::Default, "{}", spec.key);
        }
        let err = s.set(&SETTINGS[0], vec!["a".into(), "b".into()], Source::Default);
        assert!(err.unwrap_err().contains("takes one value"));
    }

    #[test]
    fn defaults_without_any_configuration() {
        let env = env_of(&[("HOME", "/home/u")]);
        let s = Settings::load(None, &no_args(), &env).unwrap();
        assert_eq!(s.cache_dir.value, PathBuf::from("/home/u/.cache/warmcache"));
        assert_eq!(s.tiers.value.len(), 2);
        assert_eq!(s.tiers.value[0].kind, TierKind::Memory);
        assert_eq!(
            s.tiers.value[1].path.as_deref(),
            Some(Path::new("/home/u/.cache/warmcache/files"))
        );
        assert_eq!(s.config_file, None);
        let env = env_of(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]);
        let s = Settings::load(None, &no_args(), &env).unwrap();
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
        let mut s = Settings::load(None, &no_args(), &env_of(&[("HOME", "/h")])).unwrap();
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

    #[test]
    fn eviction_is_a_disk_tier_setting() {
        let mut s = Settings::load(None, &no_args(), &env_of(&[("HOME", "/h")])).unwrap();
        s.apply_file(
            Path::new("/etc/w.toml"),
            "[[tiers]]\nkind = \"redb\"\neviction = \"lru\"\n",
        )
        .unwrap();
        let eviction = s.tiers.value[0].eviction;
        assert_eq!(eviction, Some(warmcache_core::backend::Eviction::Lru));
        let err = file_error("[[tiers]]\nkind = \"fs\"\neviction = \"lfu\"\n");
        assert!(err.starts_with("/etc/w.toml:3: key `eviction`:"), "{err}");
        assert!(err.contains("`lru`") && err.contains("`cost`"), "{err}");
        let err = file_error("[[tiers]]\nkind = \"memory\"\neviction = \"cost\"\n");
        assert!(err.contains("fs, redb and rocksdb"), "{err}");
    }
}
