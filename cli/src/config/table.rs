//! Every setting once: its key in the file, its flag and variable (clap reads both), its help,
//! how its text is parsed into [`Settings`], and how `warmcache config` shows it.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches};

use super::engine::cranelift_pair;
use super::tiers::parse_tier_list;
use super::{ConfigError, Settings, Source, expand_home};

/// One setting. The flag is `--` and `flag`; the variable is `env`.
#[derive(Debug)]
pub struct Spec {
    /// The key in the configuration file (`engine.` for the `[engine]` table).
    pub key: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    /// A list: the flag is repeatable and every value may hold several, comma-separated.
    pub list: bool,
}

const fn one(
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    value_name: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        key,
        flag,
        env,
        value_name,
        help,
        list: false,
    }
}

impl Spec {
    /// This setting takes a list.
    const fn list(self) -> Self {
        Self { list: true, ..self }
    }
}

/// The settings, in the order `warmcache config` prints them.
pub const SETTINGS: &[Spec] = &[
    one(
        "cache_dir",
        "cache-dir",
        "WARMCACHE_CACHE_DIR",
        "DIR",
        "Cache directory (default: $XDG_CACHE_HOME/warmcache, else ~/.cache/warmcache)",
    ),
    one(
        "secret_env",
        "secret-env",
        "WARMCACHE_SECRET_ENV",
        "VAR",
        "Environment variable holding the integrity secret (a MAC key) for every tier",
    ),
    one(
        "previous_secret_envs",
        "previous-secret-envs",
        "WARMCACHE_PREVIOUS_SECRET_ENVS",
        "VAR",
        "Variables holding earlier secrets, still accepted when reading (a rotation)",
    )
    .list(),
    one(
        "signing_key_file",
        "signing-key-file",
        "WARMCACHE_SIGNING_KEY_FILE",
        "FILE",
        "PKCS#8 PEM file of the Ed25519 key this host signs entries with (a producer)",
    ),
    one(
        "signing_key_env",
        "signing-key-env",
        "WARMCACHE_SIGNING_KEY_ENV",
        "VAR",
        "Environment variable holding that key's PEM instead of a file",
    ),
    one(
        "trusted_keys",
        "trusted-keys",
        "WARMCACHE_TRUSTED_KEYS",
        "KEY",
        "Public keys (ed25519:HEX or ID=ed25519:HEX) whose signatures the bucket's entries carry",
    )
    .list(),
    one(
        "revoked_keys",
        "revoked-keys",
        "WARMCACHE_REVOKED_KEYS",
        "ID",
        "Key ids whose signatures are refused on every tier",
    )
    .list(),
    one(
        "on_shared_miss",
        "on-shared-miss",
        "WARMCACHE_ON_SHARED_MISS",
        "compile|wait|fail",
        "What a host without a signing key does when the bucket has no signed entry",
    ),
    one(
        "insecure_shared",
        "insecure-shared",
        "WARMCACHE_INSECURE_SHARED",
        "BOOL",
        "Allow a shared tier without a secret (anyone who can write it can run code here)",
    ),
    one(
        "coordinate",
        "coordinate",
        "WARMCACHE_COORDINATE",
        "BOOL",
        "Compile a cold module once between processes and hosts, through leases (default true)",
    ),
    one(
        "verify_every_load",
        "verify-every-load",
        "WARMCACHE_VERIFY_EVERY_LOAD",
        "BOOL",
        "Hash every entry file on every load (default true)",
    ),
    one(
        "sealed_loads",
        "sealed-loads",
        "WARMCACHE_SEALED_LOADS",
        "BOOL",
        "Load file-tier entries from sealed in-memory copies instead of mappings",
    ),
    one(
        "coordination_wait_ms",
        "coordination-wait-ms",
        "WARMCACHE_COORDINATION_WAIT_MS",
        "MS",
        "How long a process waits for another's compile before compiling itself",
    ),
    one(
        "lease_ttl_ms",
        "lease-ttl-ms",
        "WARMCACHE_LEASE_TTL_MS",
        "MS",
        "How long a bucket lease lives without renewal",
    ),
    one(
        "input_racy_window_ms",
        "input-racy-window-ms",
        "WARMCACHE_INPUT_RACY_WINDOW_MS",
        "MS",
        "How much older than its record a wasm file must be for its remembered hash to be used",
    ),
    one(
        "remember_failures_ms",
        "remember-failures-ms",
        "WARMCACHE_REMEMBER_FAILURES_MS",
        "MS",
        "How long a failed compile is remembered, so no process sharing a tier compiles it again \
         (0: not remembered; default 600000)",
    ),
    one(
        "isolate_compiles",
        "isolate-compiles",
        "WARMCACHE_ISOLATE_COMPILES",
        "BOOL",
        "Compile in a worker process under compile_timeout_ms and compile_memory (default true)",
    ),
    one(
        "compile_timeout_ms",
        "compile-timeout-ms",
        "WARMCACHE_COMPILE_TIMEOUT_MS",
        "MS",
        "Wall time one compile may take in the worker (default 600000)",
    ),
    one(
        "compile_memory",
        "compile-memory",
        "WARMCACHE_COMPILE_MEMORY",
        "SIZE",
        "Address space the compile worker may use, such as 8GiB (0: no limit; default 8GiB)",
    ),
    one(
        "engine.opt_level",
        "opt-level",
        "WARMCACHE_OPT_LEVEL",
        "LEVEL",
        "Cranelift optimization level: none, speed, speed_and_size",
    ),
    one(
        "engine.target",
        "target",
        "WARMCACHE_TARGET",
        "TRIPLE",
        "Compile for this target triple (such as aarch64-unknown-linux-gnu) at its baseline CPU \
         instead of for this host",
    ),
    one(
        "engine.cpu_level",
        "cpu-level",
        "WARMCACHE_CPU_LEVEL",
        "LEVEL",
        "Share artifacts across CPU generations: auto (the best level this CPU runs) or the \
         highest level to load (x86-64-v1 to x86-64-v4, aarch64, aarch64-lse); the best level \
         present is loaded, a miss compiles for the highest",
    ),
    one(
        "engine.native_first",
        "native-first",
        "WARMCACHE_NATIVE_FIRST",
        "BOOL",
        "With cpu_level: look up this host's own entry (native code, as a node without \
         cpu_level stores it) before any level",
    ),
    one(
        "engine.cold_start",
        "cold-start",
        "WARMCACHE_COLD_START",
        "MODE",
        "What a cold miss runs: optimized (compile with Cranelift first) or baseline (Winch code \
         at once, about a quarter of the compile time; the optimized code is compiled behind it \
         and used from the next run)",
    ),
    one(
        "engine.cranelift_set",
        "cranelift-set",
        "WARMCACHE_CRANELIFT_SET",
        "NAME=VALUE",
        "A Cranelift setting for the target (such as has_avx2=true); repeatable",
    )
    .list(),
    one(
        "engine.simd",
        "simd",
        "WARMCACHE_SIMD",
        "BOOL",
        "Enable wasm SIMD",
    ),
    one(
        "engine.fuel",
        "fuel",
        "WARMCACHE_FUEL",
        "BOOL",
        "Meter execution with fuel",
    ),
    one(
        "engine.epochs",
        "epochs",
        "WARMCACHE_EPOCHS",
        "BOOL",
        "Enable epoch interruption",
    ),
    one(
        "engine.debug_info",
        "debug-info",
        "WARMCACHE_DEBUG_INFO",
        "BOOL",
        "Emit DWARF debug information",
    ),
    one(
        "tiers",
        "tiers",
        "WARMCACHE_TIERS",
        "LIST",
        "Tiers, fastest first: memory[=SIZE], fs[=DIR], redb[=FILE], rocksdb[=DIR], s3=URL, \
         http=URL, comma-separated (+ro after a kind makes it read-only)",
    ),
];

/// The spec of the setting at `key` in the file, if there is one.
pub fn spec(key: &str) -> Option<&'static Spec> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The flags (each also read from its variable), for every subcommand.
pub fn args() -> impl Iterator<Item = Arg> {
    SETTINGS.iter().map(|spec| {
        let arg = Arg::new(spec.key)
            .long(spec.flag)
            .env(spec.env)
            .value_name(spec.value_name)
            .help(spec.help)
            .global(true)
            .help_heading("Settings (each also read from the variable shown)")
            // A tier URL may carry credentials: never echo a variable's value in help.
            .hide_env_values(true)
            .value_parser(clap::value_parser!(String));
        if spec.list {
            arg.action(ArgAction::Append).value_delimiter(',')
        } else {
            arg.action(ArgAction::Set)
        }
    })
}

impl Settings {
    /// Applies what the command line and the environment set (the flag wins over its variable,
    /// as clap reads them).
    pub(super) fn apply_args(&mut self, matches: &ArgMatches) -> Result<(), ConfigError> {
        for spec in SETTINGS {
            let Some(values) = matches.get_many::<String>(spec.key) else {
                continue;
            };
            let source = match matches.value_source(spec.key) {
                Some(ValueSource::EnvVariable) => Source::Env(spec.env),
                Some(ValueSource::CommandLine) => Source::Flag(spec.flag),
                _ => continue,
            };
            let items = values.map(|v| v.trim().to_owned()).collect();
            self.set(spec, items, source.clone())
                .map_err(|message| ConfigError::Value {
                    origin: source.to_string(),
                    message,
                })?;
        }
        Ok(())
    }

    /// Sets the setting of `spec` from its text (`items`: one for a single value; for a list,
    /// its items), remembering `source`.
    pub(super) fn set(
        &mut self,
        spec: &Spec,
        items: Vec<String>,
        source: Source,
    ) -> Result<(), String> {
        let items: Vec<String> = items.into_iter().filter(|i| !i.is_empty()).collect();
        let text = || single(spec, &items);
        let e = &mut self.engine;
        match spec.key {
            "cache_dir" => self.cache_dir.set(PathBuf::from(text()?), source),
            "secret_env" => self.secret_env.set(Some(text()?), source),
            "previous_secret_envs" => self.previous_secret_envs.set(items, source),
            "signing_key_file" => {
                let path = expand_home(&PathBuf::from(text()?));
                self.signing_key_file.set(Some(path), source);
            }
            "signing_key_env" => self.signing_key_env.set(Some(text()?), source),
            "trusted_keys" => {
                for key in &items {
                    key.parse::<warmcache_core::PublicKey>()
                        .map_err(|e| e.to_string())?;
                }
                self.trusted_keys.set(items, source);
            }
            "revoked_keys" => self.revoked_keys.set(items, source),
            "on_shared_miss" => self.on_shared_miss.set(text()?.parse()?, source),
            "insecure_shared" => self.insecure_shared.set(boolean(&text()?)?, source),
            "coordinate" => self.coordinate.set(boolean(&text()?)?, source),
            "verify_every_load" => self.verify_every_load.set(boolean(&text()?)?, source),
            "sealed_loads" => self.sealed_loads.set(boolean(&text()?)?, source),
            "coordination_wait_ms" => self.coordination_wait_ms.set(millis(&text()?)?, source),
            "lease_ttl_ms" => self.lease_ttl_ms.set(millis(&text()?)?, source),
            "input_racy_window_ms" => self.input_racy_window_ms.set(millis(&text()?)?, source),
            "isolate_compiles" => self.isolate_compiles.set(boolean(&text()?)?, source),
            "compile_timeout_ms" => self.compile_timeout_ms.set(millis(&text()?)?, source),
            "compile_memory" => {
                let size = text()?
                    .parse()
                    .map_err(|e: crate::size::SizeError| e.to_string())?;
                self.compile_memory.set(size, source);
            }
            "remember_failures_ms" => {
                let ms = text()?;
                let ms = ms
                    .parse()
                    .map_err(|_| format!("expected a number of milliseconds, got {ms:?}"))?;
                self.remember_failures_ms.set(ms, source);
            }
            "engine.opt_level" => e.opt_level.set(text()?.parse()?, source),
            "engine.target" => e.target.set(Some(text()?), source),
            "engine.cpu_level" => {
                let level = text()?;
                super::engine::cpu_level(&level)?;
                e.cpu_level.set(Some(level), source);
            }
            "engine.native_first" => e.native_first.set(boolean(&text()?)?, source),
            "engine.cold_start" => e.cold_start.set(text()?.parse()?, source),
            "engine.cranelift_set" => {
                for item in &items {
                    cranelift_pair(item)?;
                }
                e.cranelift_set.set(items, source);
            }
            "engine.simd" => e.simd.set(boolean(&text()?)?, source),
            "engine.fuel" => e.fuel.set(boolean(&text()?)?, source),
            "engine.epochs" => e.epochs.set(boolean(&text()?)?, source),
            "engine.debug_info" => e.debug_info.set(boolean(&text()?)?, source),
            "tiers" => self.tiers.set(parse_tier_list(&text()?)?, source),
            other => return Err(format!("no setting {other:?}")),
        }
        Ok(())
    }

    /// The setting of `spec` as `warmcache config` shows it, and where it came from. Secrets
    /// never appear: only the names of their variables and the paths of their files.
    pub fn show(&self, spec: &Spec) -> (String, &Source) {
        fn opt<T: ToString>(value: Option<T>) -> String {
            value.map_or_else(|| "(none)".to_owned(), |v| v.to_string())
        }
        let e = &self.engine;
        match spec.key {
            "cache_dir" => (
                self.cache_dir.value.display().to_string(),
                &self.cache_dir.source,
            ),
            "secret_env" => (opt(self.secret_env.value.as_ref()), &self.secret_env.source),
            "previous_secret_envs" => (
                self.previous_secret_envs.value.join(","),
                &self.previous_secret_envs.source,
            ),
            "signing_key_file" => (
                opt(self.signing_key_file.value.as_ref().map(|p| p.display())),
                &self.signing_key_file.source,
            ),
            "signing_key_env" => (
                opt(self.signing_key_env.value.as_ref()),
                &self.signing_key_env.source,
            ),
            "trusted_keys" => (
                self.trusted_keys
                    .value
                    .iter()
                    .filter_map(|k| k.parse::<warmcache_core::PublicKey>().ok())
                    .map(|k| format!("{}={k}", k.id()))
                    .collect::<Vec<_>>()
                    .join(","),
                &self.trusted_keys.source,
            ),
            "revoked_keys" => (self.revoked_keys.value.join(","), &self.revoked_keys.source),
            "on_shared_miss" => self.on_shared_miss.shown(),
            "insecure_shared" => self.insecure_shared.shown(),
            "coordinate" => self.coordinate.shown(),
            "verify_every_load" => self.verify_every_load.shown(),
            "sealed_loads" => self.sealed_loads.shown(),
            "coordination_wait_ms" => self.coordination_wait_ms.shown(),
            "lease_ttl_ms" => self.lease_ttl_ms.shown(),
            "input_racy_window_ms" => self.input_racy_window_ms.shown(),
            "remember_failures_ms" => self.remember_failures_ms.shown(),
            "isolate_compiles" => self.isolate_compiles.shown(),
            "compile_timeout_ms" => self.compile_timeout_ms.shown(),
            "compile_memory" => self.compile_memory.shown(),
            "engine.opt_level" => e.opt_level.shown(),
            "engine.target" => (
                e.target.value.clone().unwrap_or_else(|| "host".to_owned()),
                &e.target.source,
            ),
            "engine.cpu_level" => (
                e.cpu_level
                    .value
                    .clone()
                    .unwrap_or_else(|| "off".to_owned()),
                &e.cpu_level.source,
            ),
            "engine.native_first" => e.native_first.shown(),
            "engine.cold_start" => e.cold_start.shown(),
            "engine.cranelift_set" => (e.cranelift_set.value.join(","), &e.cranelift_set.source),
            "engine.simd" => e.simd.shown(),
            "engine.fuel" => e.fuel.shown(),
            "engine.epochs" => e.epochs.shown(),
            "engine.debug_info" => e.debug_info.shown(),
            _ => (
                format!("{} tiers", self.tiers.value.len()),
                &self.tiers.source,
            ),
        }
    }
}

/// The one value of a setting that takes one.
fn single(spec: &Spec, items: &[String]) -> Result<String, String> {
    match items {
        [one] => Ok(one.clone()),
        [] => Err(format!("`{}` needs a value", spec.key)),
        _ => Err(format!(
            "`{}` takes one value, got {}",
            spec.key,
            items.len()
        )),
    }
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {value:?}")),
    }
}

fn millis(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("expected a number of milliseconds (1 or more), got {value:?}"))
}
