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
    /// The same definitions in the baseline engine ([`Self::with_baseline`]).
    baseline: Option<L>,
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
            baseline: None,
            name: name.into(),
            version,
        }
    }

    /// Adds the same definitions built in the [`Baseline`](crate::Baseline) engine, so that
    /// [`instance_pre`](crate::InstanceCache::instance_pre) can answer a cold miss with a
    /// pre-instantiation of baseline code while the optimized artifact compiles (its store
    /// must then come from its own engine: `pre.module().engine()`). Without it, or through
    /// [`instantiate`](crate::InstanceCache::instantiate), which takes the caller's store, the
    /// instance cache waits for the optimized artifact. It must define exactly what `linker`
    /// defines: it shares its name and version.
    #[must_use]
    pub fn with_baseline(mut self, linker: L) -> Self {
        self.baseline = Some(linker);
        self
    }

    /// The linker of the baseline engine, if one was added.
    pub fn baseline(&self) -> Option<&L> {
        self.baseline.as_ref()
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
