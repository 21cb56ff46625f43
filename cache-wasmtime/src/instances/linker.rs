//! [`NamedLinker`]: a linker with the identity the instance cache keys it by.

use std::fmt;

/// A linker together with its name and version, which stand for its definitions in the keys of
/// an [`InstanceCache`](crate::InstanceCache).
///
/// A linker's host functions are closures, so it cannot be hashed; the caller names it instead.
/// Pre-instantiations are shared between requests with the same module and the same identity,
/// so **two linkers with different definitions must never share a name and version**: bump
/// the version whenever what the linker defines changes. The linker is owned and handed out
/// only by shared reference, so it cannot change under its identity once named.
pub struct NamedLinker<L> {
    linker: L,
    name: String,
    version: u64,
}

impl<L> NamedLinker<L> {
    /// Names `linker` (a [`wasmtime::Linker`] or [`wasmtime::component::Linker`]).
    ///
    /// ```
    /// use warmcache_wasmtime::NamedLinker;
    ///
    /// let engine = wasmtime::Engine::default();
    /// let mut linker = wasmtime::Linker::<()>::new(&engine);
    /// linker.func_wrap("host", "double", |x: i32| x * 2)?;
    /// let linker = NamedLinker::new(linker, "host-v1", 1);
    /// assert_eq!(linker.name(), "host-v1");
    /// # Ok::<(), wasmtime::Error>(())
    /// ```
    pub fn new(linker: L, name: impl Into<String>, version: u64) -> Self {
        Self {
            linker,
            name: name.into(),
            version,
        }
    }

    /// The linker.
    pub fn linker(&self) -> &L {
        &self.linker
    }

    /// The linker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The linker's version.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl<L> fmt::Debug for NamedLinker<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedLinker")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<L> fmt::Display for NamedLinker<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}
