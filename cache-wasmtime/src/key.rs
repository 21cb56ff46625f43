//! Keys that cannot go stale: everything that changes the compiled code is a field.

use std::fmt;
use std::str::FromStr;

use warmcache_core::{CacheKey, KeyBuilder, Namespace, ParseKeyError};
use wasmtime::Engine;

/// The wasmtime release this crate is built against, recorded in every entry's producer and
/// written as the first key field. wasmtime's compatibility hash also covers its full version
/// (through its default `ModuleVersionStrategy`); the explicit field keeps keys apart even for
/// engines configured with another version strategy.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Which wasmtime artifact an entry holds. Each kind has its own key namespace, and the
/// envelope records the kind, so a module entry can never be loaded as a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// A core module ([`wasmtime::Module`]).
    Module,
    /// A component ([`wasmtime::component::Component`]).
    Component,
}

impl ArtifactKind {
    /// The key namespace of this kind.
    pub fn namespace(self) -> &'static str {
        match self {
            ArtifactKind::Module => "wasmtime-module",
            ArtifactKind::Component => "wasmtime-component",
        }
    }

    /// The envelope kind id (`"wmod"` and `"wcmp"` as little-endian bytes).
    pub fn envelope_kind(self) -> u32 {
        match self {
            ArtifactKind::Module => u32::from_le_bytes(*b"wmod"),
            ArtifactKind::Component => u32::from_le_bytes(*b"wcmp"),
        }
    }

    /// The kind recorded under `envelope_kind`, if it is one of ours.
    pub fn from_envelope_kind(kind: u32) -> Option<Self> {
        [ArtifactKind::Module, ArtifactKind::Component]
            .into_iter()
            .find(|k| k.envelope_kind() == kind)
    }

    /// `"module"` or `"component"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Module => "module",
            ArtifactKind::Component => "component",
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The blake3 hash of a wasm binary (or text), the content field of a key.
///
/// Callers that already store code by hash can supply it with
/// [`Wasm::hashed`](crate::Wasm::hashed) and skip hashing
/// on every lookup; the bytes they hand over on a miss are checked against it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hashes `wasm` (on several threads when it is large).
    pub fn of(wasm: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new();
        if wasm.len() >= 1 << 20 {
            hasher.update_rayon(wasm);
        } else {
            hasher.update(wasm);
        }
        Self(*hasher.finalize().as_bytes())
    }

    /// A hash the caller computed with blake3 (`blake3::hash(wasm)`).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A ContentHash prints like a CacheKey: lowercase hex.
        fmt::Display::fmt(&CacheKey::from_bytes(self.0), f)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

impl FromStr for ContentHash {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CacheKey::from_str(s).map(|k| Self(*k.as_bytes()))
    }
}

/// Derives the key of a compiled artifact.
///
/// Fields: the [`EngineKey`] of `engine` (wasmtime version, host, compatibility hash), the
/// content hash, and the caller's extras (empty when there are none).
pub fn artifact_key(
    namespace: &Namespace,
    engine: &Engine,
    content: &ContentHash,
    extras: &[u8],
) -> CacheKey {
    EngineKey::of(engine).artifact_key(namespace, content, extras)
}

/// Everything about an engine that changes compiled code, digested once.
///
/// Fields, in order: wasmtime version, the host's architecture and OS (so a shared tier never
/// offers one kind of host's entries to another), and the engine's
/// [`precompile_compatibility_hash`](Engine::precompile_compatibility_hash) (compilation target,
/// Cranelift flags and opt level, ISA flags, tunables such as memory reservation and guard
/// sizes, signals-based traps, fuel, epochs, debug info, and enabled wasm features) through the
/// canonical hasher. Hashing all of that takes microseconds, so caches remember it per engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineKey(CacheKey);

impl EngineKey {
    /// Digests `engine`'s settings.
    pub fn of(engine: &Engine) -> Self {
        let mut builder = Namespace::new("wasmtime-engine").builder();
        builder
            .str(WASMTIME_VERSION)
            .str(std::env::consts::ARCH)
            .str(std::env::consts::OS)
            .hash(&engine.precompile_compatibility_hash());
        Self(builder.finish())
    }

    /// The digest itself (recorded in entries as the `engine` field).
    pub(crate) fn digest(&self) -> CacheKey {
        self.0
    }

    /// An engine key from an already finished digest (see [`CompileTarget::engine_key`](crate::CompileTarget::engine_key)).
    pub(crate) fn from_key(key: CacheKey) -> Self {
        Self(key)
    }

    /// The key of the artifact of `content` with `extras` in `namespace`.
    pub fn artifact_key(
        &self,
        namespace: &Namespace,
        content: &ContentHash,
        extras: &[u8],
    ) -> CacheKey {
        let mut builder: KeyBuilder = namespace.builder();
        builder.key(&self.0).bytes(content.as_bytes()).bytes(extras);
        builder.finish()
    }
}

/// The architecture and OS of this process, as `arch-os` (for example `x86_64-linux`).
pub fn host() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}
