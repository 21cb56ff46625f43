//! Opening the configured tiers. A tier that cannot be opened is skipped with a warning, so a
//! locked database or a bad remote never stops a run.
//!
//! A `memory` tier is the cache's in-process tier of loaded modules, bounded by their code size:
//! for compiled wasm that is what memory is for, and a memory tier of bytes in front of the file
//! tier would only copy each mapped artifact into the heap.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use warmcache_core::{
    Backend, Compression, Coordination, ErrorKind, Integrity, OnSharedMiss, SigningKey, Tier,
    Tiered, VerifiedFiles, WhenFull,
};
use warmcache_fs::FsBackend;
use warmcache_redb::RedbBackend;
use warmcache_s3::S3Backend;

use crate::config::{CompressionSetting, OnSharedMissSetting, Settings, TierConfig, TierKind};

/// Default capacity of disk tiers without a `size`.
const DEFAULT_DISK_SIZE: u64 = 10 << 30;
/// Default capacity of a memory tier without a `size`.
const DEFAULT_MEMORY_SIZE: u64 = 256 << 20;
/// The bucket's namespace for signed entries: one for the fleet, whoever signed them.
const SIGNED_NAMESPACE: &str = "signed";

/// One opened tier.
#[derive(Debug, Clone)]
pub struct OpenTier {
    pub config: TierConfig,
    /// `kind:location`, the tier's name in stats and messages.
    pub label: String,
    pub backend: Arc<dyn Backend>,
    /// The file tier's own handle, for what only it knows (when each entry was last used).
    pub fs: Option<Arc<FsBackend>>,
    /// Only read: configured `read_only`, or the namespace of a previous secret.
    pub read_only: bool,
    /// The namespace of the current secret's key id: only this stack's secret writes there.
    pub own_namespace: bool,
    /// Entries must be signed by a trusted key (a bucket, with signing configured).
    pub signed: bool,
}

impl OpenTier {
    /// The rule entries in this tier meet.
    pub fn trust(&self) -> warmcache_core::Trust {
        if self.signed {
            warmcache_core::Trust::Signature
        } else {
            warmcache_core::Trust::Secret
        }
    }

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
    /// What a host without a signing key does when the signed bucket has no entry.
    pub on_shared_miss: OnSharedMiss,
    /// Tiers that could not be opened, as `(label, why)`: a run goes on without them, a
    /// maintenance command fails naming them.
    pub failed: Vec<(String, String)>,
    /// How cold compiles are coordinated with other processes and hosts.
    pub coordination: Coordination,
    /// Records of verified entry files, for file tiers that skip re-hashing unchanged ones
    /// (`verify_every_load = false`).
    pub verified_files: Option<VerifiedFiles>,
    /// File-tier entries are loaded from sealed copies (`sealed_loads = true`).
    pub sealed_loads: bool,
    /// How long a failed compile is remembered (`remember_failures_ms`; `None` for 0).
    pub remember_failures: Option<Duration>,
    /// Where compiles run (`isolate_compiles`): this program's compile worker, under limits.
    pub isolation: Option<warmcache_wasmtime::Isolation>,
}

/// What opening each configured tier needs to know.
struct Opening<'a> {
    integrity: &'a Integrity,
    /// Signing is configured: the bucket is a signed tier.
    signs: bool,
    /// No secret and no `insecure_shared`: a tier others can write is refused.
    trusts_plain: bool,
    /// A damaged database is moved aside and recreated.
    recreate: bool,
}

impl Opening<'_> {
    /// Opens `config` once per namespace it is read in, onto `tiers`; one that cannot be opened
    /// goes onto `failed`.
    fn open(
        &self,
        config: &TierConfig,
        tiers: &mut Vec<OpenTier>,
        failed: &mut Vec<(String, String)>,
    ) -> Result<(), StackError> {
        let label = format!("{}:{}", config.kind.as_str(), config.location());
        // With signing, the bucket holds what the fleet's producers sign, whatever their
        // local secrets: one namespace, read by every node that trusts them.
        let signed = config.kind.is_remote() && self.signs;
        for (n, namespace) in self.namespaces(config, signed).into_iter().enumerate() {
            let label = match (&namespace, n) {
                (Some(id), n) if n > 0 => format!("{label} (previous key {id})"),
                _ => label.clone(),
            };
            let previous = n > 0;
            if previous
                && config.kind == TierKind::Fs
                && !fs_namespace_exists(config, namespace.as_deref())
            {
                // Nothing was ever sealed there under that key.
                continue;
            }
            // A host without a signing key never writes the signed bucket.
            let read_only = config.read_only || previous || (signed && !self.integrity.can_sign());
            let opened = open_tier(
                config,
                &label,
                namespace.as_deref(),
                read_only,
                self.recreate,
            );
            let (backend, fs) = match opened {
                Ok(opened) => opened,
                Err(message) => {
                    tracing::warn!("skipping tier {label}: {message}");
                    failed.push((label, message));
                    continue;
                }
            };
            if self.trusts_plain
                && !signed
                && let Some(why) = exposure(config, &backend, fs.as_deref())
            {
                return Err(StackError::PlainSharedTier {
                    what: format!("tier {label}"),
                    why,
                });
            }
            tiers.push(OpenTier {
                config: config.clone(),
                read_only,
                own_namespace: namespace.is_some() && !previous && !signed,
                signed,
                label,
                backend,
                fs,
            });
        }
        Ok(())
    }

    /// The namespaces `config` is read in. Entries sealed under each secret live in a namespace
    /// of their own, in a bucket and (with a secret) in a directory: the current key's
    /// (read-write), then each previous key's (read-only); a signed bucket has one.
    fn namespaces(&self, config: &TierConfig, signed: bool) -> Vec<Option<String>> {
        let namespaced = match config.kind {
            TierKind::S3 | TierKind::Http => true,
            TierKind::Fs => self.integrity.is_keyed(),
            _ => false,
        };
        if signed {
            vec![Some(SIGNED_NAMESPACE.to_owned())]
        } else if namespaced {
            std::iter::once(self.integrity.key_id())
                .chain(self.integrity.previous_key_ids())
                .map(Some)
                .collect()
        } else {
            vec![None]
        }
    }
}

/// The worker of `settings`' engine: this program, told the engine's settings as flags (which
/// win over any file or variable it reads), with the configured limits.
fn isolation(settings: &Settings) -> Option<warmcache_wasmtime::Isolation> {
    if !settings.isolate_compiles.value {
        return None;
    }
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(e) => {
            tracing::warn!(
                "compiling in this process: cannot find this program to run its compile worker: {e}"
            );
            return None;
        }
    };
    let e = &settings.engine;
    let mut args: Vec<String> = Vec::new();
    if let Some(file) = &settings.config_file {
        args.extend(["--config".to_owned(), file.display().to_string()]);
    }
    args.extend([
        format!("--opt-level={}", e.opt_level.value),
        format!("--simd={}", e.simd.value),
        format!("--fuel={}", e.fuel.value),
        format!("--epochs={}", e.epochs.value),
        format!("--debug-info={}", e.debug_info.value),
    ]);
    if let Some(target) = &e.target.value {
        args.push(format!("--target={target}"));
    }
    for item in &e.cranelift_set.value {
        args.push(format!("--cranelift-set={item}"));
    }
    if let Some(level) = &e.cpu_level.value {
        args.push(format!("--cpu-level={level}"));
    }
    args.push(format!("--cold-start={}", e.cold_start.value));
    args.push("compile-worker".to_owned());
    let mut isolation = warmcache_wasmtime::Isolation::new(program)
        .args(args)
        .timeout(std::time::Duration::from_millis(
            settings.compile_timeout_ms.value,
        ));
    if settings.compile_memory.value.0 > 0 {
        isolation = isolation.memory(settings.compile_memory.value.0);
    }
    Some(isolation)
}

fn coordination(settings: &Settings) -> Coordination {
    if settings.coordinate.value {
        Coordination::new()
            .wait(Duration::from_millis(settings.coordination_wait_ms.value))
            .ttl(Duration::from_millis(settings.lease_ttl_ms.value))
    } else {
        Coordination::disabled()
    }
}

/// Records of verified entry files, when loads may skip hashing unchanged ones.
fn verified_files(settings: &Settings) -> Option<VerifiedFiles> {
    if settings.verify_every_load.value {
        return None;
    }
    let records = settings.cache_dir.value.join("verified");
    VerifiedFiles::open(&records)
        .map_err(|e| {
            tracing::warn!(
                "verifying every load: cannot keep records of verified files in {}: {e}",
                records.display()
            );
        })
        .ok()
}

fn on_shared_miss(settings: &Settings) -> OnSharedMiss {
    match settings.on_shared_miss.value {
        OnSharedMissSetting::Compile => OnSharedMiss::Compute,
        OnSharedMissSetting::Wait => {
            OnSharedMiss::Wait(Duration::from_millis(settings.coordination_wait_ms.value))
        }
        OnSharedMissSetting::Fail => OnSharedMiss::Fail,
    }
}

/// Why the stack cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("the integrity secret variable {0} is not set or empty")]
    MissingSecret(String),
    #[error("the integrity secret in {var}: {source}")]
    WeakSecret {
        var: String,
        source: warmcache_core::WeakSecret,
    },
    #[error("the signing key {place}: {why}")]
    SigningKey { place: String, why: String },
    #[error("trusted key {key:?}: {source}")]
    TrustedKey {
        key: String,
        source: warmcache_core::KeyError,
    },
    #[error(
        "{what} can be written by others ({why}) but no secret is configured: anyone who can \
         write it could make this machine run their code. Set `secret_env` (a variable holding \
         at least 32 random bytes) to authenticate entries, make it private (`chmod go-w`), or \
         set `insecure_shared = true` to accept that risk"
    )]
    PlainSharedTier { what: String, why: String },
    #[error("creating cache directory {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Stack {
    /// Opens every configured tier, skipping (with a warning) those that cannot be opened. A
    /// damaged redb database is moved aside and recreated.
    pub fn open(settings: &Settings) -> Result<Self, StackError> {
        Self::open_with(settings, true)
    }

    /// Opens every tier as it is, for checking it: a damaged database is reported as a tier that
    /// could not be opened, not moved aside.
    pub fn open_as_is(settings: &Settings) -> Result<Self, StackError> {
        Self::open_with(settings, false)
    }

    fn open_with(settings: &Settings, recreate: bool) -> Result<Self, StackError> {
        let integrity = integrity(settings)?;
        let dir = &settings.cache_dir.value;
        warmcache_core::files::create_cache_dir_all(dir).map_err(|source| {
            StackError::CacheDir {
                path: dir.clone(),
                source,
            }
        })?;
        let opening = Opening {
            // Configured signing (a key, or trusted keys even if all are revoked) makes the
            // bucket a signed tier.
            signs: integrity.can_sign() || !settings.trusted_keys.value.is_empty(),
            trusts_plain: !integrity.is_keyed() && !settings.insecure_shared.value,
            integrity: &integrity,
            recreate,
        };
        // The side files (stats, input and verified-file records) live in the cache directory.
        if opening.trusts_plain
            && let Ok(Some(why)) = warmcache_core::files::writable_by_others(dir)
        {
            return Err(StackError::PlainSharedTier {
                what: format!("the cache directory {}", dir.display()),
                why,
            });
        }
        let mut tiers = Vec::new();
        let mut failed = Vec::new();
        let mut live_bytes = 0;
        for config in &settings.tiers.value {
            if config.kind == TierKind::Memory {
                live_bytes += config.size.map_or(DEFAULT_MEMORY_SIZE, |s| s.0);
                continue;
            }
            opening.open(config, &mut tiers, &mut failed)?;
        }
        Ok(Self {
            tiers,
            live_bytes,
            on_shared_miss: on_shared_miss(settings),
            failed,
            coordination: coordination(settings),
            verified_files: verified_files(settings),
            sealed_loads: settings.sealed_loads.value,
            remember_failures: Some(Duration::from_millis(settings.remember_failures_ms.value))
                .filter(|d| !d.is_zero()),
            isolation: isolation(settings),
            integrity,
        })
    }

    /// Fails naming every tier that could not be opened: what maintenance commands need, since
    /// checking or clearing fewer tiers than configured is not success.
    pub fn require_all(&self) -> Result<(), String> {
        if self.failed.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self
            .failed
            .iter()
            .map(|(label, why)| format!("{label} ({why})"))
            .collect();
        Err(format!(
            "{} tier(s) could not be opened: {}",
            self.failed.len(),
            names.join("; ")
        ))
    }

    /// A module cache over these tiers.
    pub fn module_cache(&self) -> warmcache_wasmtime::ModuleCache {
        self.module_cache_over(self.tiered())
    }

    /// A module cache over `tiers` (from [`tiered`](Self::tiered) or
    /// [`filling`](Self::filling)).
    pub fn module_cache_over(&self, tiers: Tiered) -> warmcache_wasmtime::ModuleCache {
        self.cache_over(tiers)
    }

    /// A component cache over these tiers.
    pub fn component_cache(&self) -> warmcache_wasmtime::ComponentCache {
        self.component_cache_over(self.tiered())
    }

    /// A component cache over `tiers`.
    pub fn component_cache_over(&self, tiers: Tiered) -> warmcache_wasmtime::ComponentCache {
        self.cache_over(tiers)
    }

    /// A cache of `A` over `tiers`, as configured: live bytes, remembered failures, isolation.
    fn cache_over<A: warmcache_wasmtime::Artifact>(
        &self,
        tiers: Tiered,
    ) -> warmcache_wasmtime::WasmCache<A> {
        let mut builder = warmcache_wasmtime::WasmCache::<A>::builder()
            .tiers(tiers)
            .live_bytes(self.live_bytes);
        if let Some(lifetime) = self.remember_failures {
            builder = builder.remember_failures(lifetime);
        }
        if let Some(isolation) = &self.isolation {
            builder = builder.isolate(isolation.clone());
        }
        builder.build()
    }

    /// A tier stack over the opened backends (each call has its own counters and writers). A
    /// full upload queue drops writes: a run never waits for a slow bucket.
    pub fn tiered(&self) -> Tiered {
        self.build_tiered(WhenFull::Drop)
    }

    /// A tier stack for filling the tiers (`precompile`): a full upload queue makes the
    /// compiling threads wait, so nothing is dropped.
    pub fn filling(&self) -> Tiered {
        self.build_tiered(WhenFull::Wait)
    }

    fn build_tiered(&self, when_full: WhenFull) -> Tiered {
        let mut builder = Tiered::builder()
            .integrity(self.integrity.clone())
            .coordination(self.coordination)
            .on_shared_miss(self.on_shared_miss);
        for tier in &self.tiers {
            let remote = tier.config.kind.is_remote();
            let mut t = if remote {
                warmcache_s3::remote_tier(tier.backend())
            } else {
                Tier::new(tier.backend())
            }
            .name(tier.label.clone());
            if tier.config.kind == TierKind::Fs {
                if let Some(verified) = &self.verified_files {
                    t = t.verified_files(verified.clone());
                }
                if self.sealed_loads {
                    t = t.sealed_copies();
                }
            }
            let compression = match (tier.config.compression, remote) {
                (Some(CompressionSetting::Zstd), _) | (None, true) => {
                    warmcache_s3::RECOMMENDED_COMPRESSION
                }
                _ => Compression::None,
            };
            t = t.compression(compression);
            if tier.read_only {
                t = t.read_only();
            }
            if tier.own_namespace {
                t = t.own_namespace();
            }
            if tier.signed {
                t = t.signed();
            }
            if remote {
                if let Some(ms) = tier.config.timeout_ms {
                    t = t.timeout(Duration::from_millis(ms));
                }
                if let Some(queue) = tier.config.queue {
                    t = t.background(queue);
                }
                if when_full == WhenFull::Wait {
                    t = t.wait_when_full();
                }
            }
            builder = builder.tier(t);
        }
        builder.build()
    }
}

type Opened = (Arc<dyn Backend>, Option<Arc<FsBackend>>);

/// Why others can write what an opened tier keeps, if they can: a bucket is shared by nature;
/// a file tier knows who can write its directory; a database is as open as its file and the
/// directory holding it.
fn exposure(
    config: &TierConfig,
    backend: &Arc<dyn Backend>,
    fs: Option<&FsBackend>,
) -> Option<String> {
    if let Some(fs) = fs {
        return fs.writable_by_others().map(str::to_owned);
    }
    if let Some(path) = &config.path {
        let dir = path.parent().unwrap_or(path);
        let exposed = [path.as_path(), dir]
            .into_iter()
            .find_map(|p| warmcache_core::files::writable_by_others(p).ok().flatten());
        if exposed.is_some() {
            return exposed;
        }
    }
    backend
        .capabilities()
        .shared
        .then(|| "a store shared with other hosts".to_owned())
}

/// The integrity mode: the secret from `secret_env` (at least 32 bytes) and the previous ones,
/// or plain.
fn integrity(settings: &Settings) -> Result<Integrity, StackError> {
    let read = |var: &String| match std::env::var(var) {
        Ok(secret) if !secret.is_empty() => Integrity::from_secret(secret.as_bytes())
            .map(|_| secret)
            .map_err(|source| StackError::WeakSecret {
                var: var.clone(),
                source,
            }),
        _ => Err(StackError::MissingSecret(var.clone())),
    };
    let mut integrity = match &settings.secret_env.value {
        None => Integrity::plain(),
        Some(var) => {
            let mut integrity = Integrity::keyed(read(var)?.as_bytes());
            for previous in &settings.previous_secret_envs.value {
                integrity = integrity.accepting(read(previous)?.as_bytes());
            }
            integrity
        }
    };
    if let Some(key) = signing_key(settings)? {
        integrity = integrity.signing(key);
    }
    for key in &settings.trusted_keys.value {
        let public = key.parse().map_err(|source| StackError::TrustedKey {
            key: key.clone(),
            source,
        })?;
        integrity = integrity.trusting(public);
    }
    for id in &settings.revoked_keys.value {
        integrity = integrity.revoking(id.clone());
    }
    Ok(integrity)
}

/// The signing key from `signing_key_file` (which only its owner may read) or
/// `signing_key_env`, if either is set.
fn signing_key(settings: &Settings) -> Result<Option<SigningKey>, StackError> {
    let err = |place: String, why: String| StackError::SigningKey { place, why };
    let (place, pem) = match (
        &settings.signing_key_file.value,
        &settings.signing_key_env.value,
    ) {
        (Some(_), Some(_)) => {
            return Err(err(
                "settings".into(),
                "both signing_key_file and signing_key_env are set; keep one".into(),
            ));
        }
        (None, None) => return Ok(None),
        (Some(path), None) => {
            let place = format!("file {}", path.display());
            let pem = read_private_key_file(path).map_err(|why| err(place.clone(), why))?;
            (place, pem)
        }
        (None, Some(var)) => {
            let place = format!("in variable {var}");
            match std::env::var(var) {
                Ok(pem) if !pem.trim().is_empty() => (place, zeroize::Zeroizing::new(pem)),
                _ => return Err(err(place, "is not set or empty".into())),
            }
        }
    };
    SigningKey::from_pem(&pem)
        .map(Some)
        .map_err(|e| err(place, e.to_string()))
}

/// A private key file's text, refused when others could read it (as ssh refuses one).
fn read_private_key_file(path: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "can be read by others (mode {:o}): run `chmod 600 {}`",
            meta.mode() & 0o777,
            path.display()
        ));
    }
    if meta.len() > 64 << 10 {
        return Err("is too large to be a private key".into());
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut &file, &mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

fn fs_builder(config: &TierConfig, namespace: Option<&str>) -> warmcache_fs::FsBackendBuilder {
    let builder = FsBackend::builder(config.path.clone().unwrap_or_default());
    match namespace {
        Some(ns) => builder.namespace(ns),
        None => builder,
    }
}

/// Whether the file tier holds a directory for `namespace` (a previous key's is opened only
/// to read, so only where it exists).
fn fs_namespace_exists(config: &TierConfig, namespace: Option<&str>) -> bool {
    fs_builder(config, namespace).dir().is_dir()
}

fn open_tier(
    config: &TierConfig,
    label: &str,
    namespace: Option<&str>,
    read_only: bool,
    recreate: bool,
) -> Result<Opened, String> {
    let size = |default: u64| config.size.map_or(default, |s| s.0);
    let path = || config.path.clone().unwrap_or_default();
    let eviction = config.eviction.unwrap_or_default();
    match config.kind {
        TierKind::Memory => Err("a memory tier is the in-process tier, not a backend".into()),
        TierKind::Fs => fs_builder(config, namespace)
            .capacity(size(DEFAULT_DISK_SIZE))
            .eviction(eviction)
            .read_only(read_only)
            .name(label)
            .open()
            .map(|b| {
                let fs = Arc::new(b);
                (fs.clone() as Arc<dyn Backend>, Some(fs))
            })
            .map_err(|e| e.to_string()),
        TierKind::Redb => {
            let path = path();
            // A cache can always be rebuilt: a damaged database is moved aside and recreated
            // (with a warning) rather than skipped on every run.
            let builder = RedbBackend::builder(&path)
                .capacity(size(DEFAULT_DISK_SIZE))
                .eviction(eviction)
                .name(label);
            let opened = if recreate {
                builder.open_or_recreate()
            } else {
                builder.open()
            };
            match opened {
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
            .eviction(eviction)
            .open()
            .map(|b| (Arc::new(b) as Arc<dyn Backend>, None))
            .map_err(|e| e.to_string()),
        #[cfg(not(feature = "rocksdb"))]
        TierKind::Rocksdb => Err(
            "this warmcache was built without RocksDB; rebuild with `--features rocksdb`".into(),
        ),
        TierKind::S3 | TierKind::Http => {
            let url = config.url.clone().unwrap_or_default();
            let timeout = config
                .timeout_ms
                .map_or(warmcache_s3::REMOTE_TIMEOUT, Duration::from_millis);
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
            if let Some(namespace) = namespace {
                builder = builder.namespace(namespace);
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
