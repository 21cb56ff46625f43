//! What the cache can hold: wasmtime modules and components, behind one sealed trait.
//!
//! The unsafe loads live in the private supertrait, so only this crate can call them, and only
//! on verified bytes.
#![allow(unsafe_code)]

use std::fs::File;

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::key::ArtifactKind;

pub(crate) mod sealed {
    use std::fs::File;

    use wasmtime::Engine;

    /// The operations the cache needs; private so that nobody else reaches the unsafe loads.
    pub trait Sealed: Sized {
        /// Compiles `wasm` into artifact bytes with `engine`.
        fn precompile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>>;

        /// The artifact bytes of a loaded artifact (what `precompile` produced).
        fn serialize(&self) -> wasmtime::Result<Vec<u8>>;

        /// Loads artifact bytes.
        ///
        /// # Safety
        ///
        /// `bytes` must have been produced by `precompile` (by any engine: wasmtime rejects
        /// incompatible ones), or have passed the envelope's verification, which proves that.
        unsafe fn load(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self>;

        /// Loads artifact bytes from a file that starts with them, mapping it where the
        /// artifact type supports that. `verified` is the payload as read through the mapping
        /// the tag was checked on.
        ///
        /// # Safety
        ///
        /// As for `load`, and the file must not change while the artifact lives.
        unsafe fn load_file(engine: &Engine, file: File, verified: &[u8])
        -> wasmtime::Result<Self>;
    }
}

/// A compiled wasmtime artifact: [`Module`] or [`Component`]. Sealed: the cache's safety
/// argument depends on exactly how these are produced and loaded.
pub trait Artifact: sealed::Sealed + Clone + Send + Sync + 'static {
    /// Which kind this is.
    const KIND: ArtifactKind;

    /// The engine this artifact belongs to.
    fn engine(&self) -> &Engine;

    /// Size of the artifact's code image in memory, in bytes.
    fn image_size(&self) -> u64;
}

impl Artifact for Module {
    const KIND: ArtifactKind = ArtifactKind::Module;

    fn engine(&self) -> &Engine {
        Module::engine(self)
    }

    fn image_size(&self) -> u64 {
        let range = self.image_range();
        range.end.addr().saturating_sub(range.start.addr()) as u64
    }
}

impl sealed::Sealed for Module {
    fn precompile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
        engine.precompile_module(wasm)
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }

    unsafe fn load(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: forwarded from this function's contract.
        unsafe { Module::deserialize(engine, bytes) }
    }

    unsafe fn load_file(engine: &Engine, file: File, _verified: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: forwarded from this function's contract. wasmtime ignores the envelope's
        // trailer after the artifact (pinned by a test in warmcache-fs).
        unsafe { Module::deserialize_open_file(engine, file) }
    }
}

impl Artifact for Component {
    const KIND: ArtifactKind = ArtifactKind::Component;

    fn engine(&self) -> &Engine {
        Component::engine(self)
    }

    fn image_size(&self) -> u64 {
        let range = self.image_range();
        range.end.addr().saturating_sub(range.start.addr()) as u64
    }
}

impl sealed::Sealed for Component {
    fn precompile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
        engine.precompile_component(wasm)
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }

    unsafe fn load(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: forwarded from this function's contract.
        unsafe { Component::deserialize(engine, bytes) }
    }

    unsafe fn load_file(engine: &Engine, _file: File, verified: &[u8]) -> wasmtime::Result<Self> {
        // wasmtime 48 has no `Component::deserialize_open_file`, only a path-based variant, and
        // a path could name a different file by now. Copying from the verified mapping still
        // skips the read.
        // SAFETY: forwarded from this function's contract.
        unsafe { Component::deserialize(engine, verified) }
    }
}

/// What the first bytes of a binary say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detected {
    /// A core module binary.
    Module,
    /// A component binary.
    Component,
    /// A wasmtime artifact (`.cwasm`), not wasm.
    Precompiled,
    /// Anything else, including the text format (`.wat`), which wasmtime parses itself.
    Other,
}

pub(crate) fn detect(bytes: &[u8]) -> Detected {
    if Engine::detect_precompiled(bytes).is_some() {
        return Detected::Precompiled;
    }
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Detected::Module,
        // Components use version 0x0d with layer 1.
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Detected::Component,
        _ => Detected::Other,
    }
}
