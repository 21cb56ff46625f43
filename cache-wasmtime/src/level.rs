//! CPU levels: named baselines of an architecture's CPU features, so that a fleet of mixed
//! machines shares artifacts. A host's own engine bakes in every feature its CPU has, so two
//! generations of one architecture share nothing; an artifact compiled for a level runs on
//! every CPU that has the level's features, and a node picks the best level it can run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use wasmtime::{Config, Engine};

use crate::key::EngineKey;
use crate::target::{CompileTarget, TargetError};

/// A named set of CPU features of one architecture, compiled for as an explicit
/// [`CompileTarget`]: the x86-64 psABI levels v1 to v4 (as far as Cranelift has settings for
/// their features) and, for aarch64, the baseline and the baseline with LSE atomics.
///
/// ```
/// use warmcache_wasmtime::CpuLevel;
///
/// let v3 = CpuLevel::named("x86-64-v3").unwrap();
/// assert!(v3.features().contains(&"has_avx2"));
/// assert!(CpuLevel::named("x86-64-v2").unwrap() < v3);
/// // The levels this host can run, best first (none on another architecture).
/// for level in CpuLevel::supported_here() {
///     assert!(level.runs_here());
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuLevel {
    /// Architecture (as `std::env::consts::ARCH`), then rank within it: the derived order
    /// compares levels of one architecture by what they require.
    arch: &'static str,
    rank: u8,
    name: &'static str,
    /// What it adds to the level below it.
    adds: &'static [&'static str],
}

/// What x86-64-v2 adds to v1, v3 to v2, and v4 to v3 (the psABI levels, as far as Cranelift has
/// settings for them).
const X86_64_V2: &[&str] = &[
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
    "has_cmpxchg16b",
];
const X86_64_V3: &[&str] = &[
    "has_avx",
    "has_avx2",
    "has_bmi1",
    "has_bmi2",
    "has_fma",
    "has_lzcnt",
];
const X86_64_V4: &[&str] = &["has_avx512f", "has_avx512dq", "has_avx512vl"];

impl CpuLevel {
    /// Every level, each architecture's from the lowest to the highest.
    pub const ALL: [CpuLevel; 6] = [
        Self::level("x86_64", 1, "x86-64-v1", &[]),
        Self::level("x86_64", 2, "x86-64-v2", X86_64_V2),
        Self::level("x86_64", 3, "x86-64-v3", X86_64_V3),
        Self::level("x86_64", 4, "x86-64-v4", X86_64_V4),
        Self::level("aarch64", 1, "aarch64", &[]),
        Self::level("aarch64", 2, "aarch64-lse", &["has_lse"]),
    ];

    const fn level(
        arch: &'static str,
        rank: u8,
        name: &'static str,
        adds: &'static [&'static str],
    ) -> Self {
        Self {
            arch,
            rank,
            name,
            adds,
        }
    }

    /// The level called `name` (`x86-64-v1` to `x86-64-v4`, `aarch64`, `aarch64-lse`).
    pub fn named(name: &str) -> Option<CpuLevel> {
        Self::ALL.into_iter().find(|l| l.name == name)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// Its architecture, as `std::env::consts::ARCH` names it.
    pub fn arch(self) -> &'static str {
        self.arch
    }

    /// The Cranelift settings it turns on (each set to `true`): its own and those of the
    /// levels below it.
    pub fn features(self) -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|l| l.arch == self.arch && l.rank <= self.rank)
            .flat_map(|l| l.adds.iter().copied())
            .collect()
    }

    /// The explicit target of this level: this host's triple when the architecture is this
    /// host's, else the architecture's Linux triple, with the level's features on.
    #[allow(unsafe_code)] // Cranelift settings, through `CompileTarget::setting`.
    pub fn target(self) -> CompileTarget {
        let host = CompileTarget::host_triple();
        let triple = if host.starts_with(self.arch) {
            host
        } else {
            format!("{}-unknown-linux-gnu", self.arch)
        };
        let mut target = CompileTarget::known(&triple);
        for feature in self.features() {
            // SAFETY: CPU features of the level's own architecture; wasmtime refuses on load
            // an artifact that needs a feature the host lacks, and `runs_here` is checked
            // before a level is ever looked up.
            target = unsafe { target.setting(feature, "true") };
        }
        target
    }

    /// Whether this host's CPU has every feature of the level.
    pub fn runs_here(self) -> bool {
        self.arch == std::env::consts::ARCH && self.missing_here().is_empty()
    }

    /// The level's features this host's CPU lacks.
    pub fn missing_here(self) -> Vec<&'static str> {
        self.features()
            .into_iter()
            .filter(|f| !host_has(f))
            .collect()
    }

    /// The levels this host can run, best first.
    pub fn supported_here() -> Vec<CpuLevel> {
        let mut levels: Vec<CpuLevel> = Self::ALL.into_iter().filter(|l| l.runs_here()).collect();
        levels.reverse();
        levels
    }

    /// This level and the lower ones of its architecture, best first.
    fn and_below(self) -> Vec<CpuLevel> {
        let mut levels: Vec<CpuLevel> = Self::ALL
            .into_iter()
            .filter(|l| l.arch == self.arch && l.rank <= self.rank)
            .collect();
        levels.reverse();
        levels
    }
}

impl std::fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Whether this host's CPU has the feature behind Cranelift setting `setting`.
fn host_has(setting: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        match setting {
            "has_sse3" => has!("sse3"),
            "has_ssse3" => has!("ssse3"),
            "has_sse41" => has!("sse4.1"),
            "has_sse42" => has!("sse4.2"),
            "has_popcnt" => has!("popcnt"),
            "has_cmpxchg16b" => has!("cmpxchg16b"),
            "has_avx" => has!("avx"),
            "has_avx2" => has!("avx2"),
            "has_bmi1" => has!("bmi1"),
            "has_bmi2" => has!("bmi2"),
            "has_fma" => has!("fma"),
            "has_lzcnt" => has!("lzcnt"),
            "has_avx512f" => has!("avx512f"),
            "has_avx512dq" => has!("avx512dq"),
            "has_avx512vl" => has!("avx512vl"),
            _ => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        match setting {
            "has_lse" => std::arch::is_aarch64_feature_detected!("lse"),
            _ => false,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = setting;
        false
    }
}

/// How a node chooses among CPU levels: the levels it may load, best first, each with its
/// engine key, and the engine that compiles for the best on a miss. Give it to a cache with
/// [`WasmCache::use_cpu_levels`](crate::WasmCache::use_cpu_levels).
///
/// A request looks up the best level first and goes down; when no level has an entry it
/// compiles for the best, so the next host of that level finds it. The artifact is loaded into
/// the node's own engine (built from the same base configuration for this host), which runs
/// code of any level its CPU has. With [`native_first`](Self::native_first), the node's own
/// entry (code for exactly this CPU, as a node without levels stores it) is looked up before
/// any level.
///
/// ```
/// use std::sync::Arc;
/// use warmcache_wasmtime::{Answer, CpuLevel, CpuLevels, ModuleCache};
///
/// let base = wasmtime::Config::new();
/// if let Some(&best) = CpuLevel::supported_here().first() {
///     let levels = Arc::new(CpuLevels::new(&base, best, CpuLevel::target)?);
///     let engine = wasmtime::Engine::new(&base)?;
///     let cache = ModuleCache::builder().build();
///     cache.use_cpu_levels(&engine, Arc::clone(&levels));
///     let module = cache.get_or_compile(&engine, b"(module)".as_slice())?;
///     assert_eq!(levels.last_used(), Some(Answer::Level(best)));
/// #   let _ = module;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CpuLevels {
    levels: Vec<(CpuLevel, EngineKey)>,
    /// The target triple of the best level, recorded in the entries compiled for it.
    best_triple: String,
    compiler: Engine,
    native_first: bool,
    /// Requests answered by the native entry, then by each level, best first.
    used: Vec<AtomicU64>,
    /// 0 before any request, else 1 + the index into `used` of the latest answer.
    last: AtomicU64,
}

/// What answered a request of a node with [`CpuLevels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The node's own entry: code for exactly this host's CPU
    /// ([`CpuLevels::native_first`]).
    Native,
    /// The entry of a level, loaded or compiled.
    Level(CpuLevel),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Native => f.write_str("native"),
            Self::Level(level) => level.fmt(f),
        }
    }
}

impl CpuLevels {
    /// `ceiling` and the levels below it, each compiled as `target_of(level)` from `base`
    /// (say [`CpuLevel::target`], or that with more shared settings such as `opt_level`).
    /// Build the node's engine from the same `base`.
    ///
    /// # Errors
    ///
    /// [`TargetError::Level`] when this host's CPU lacks a feature of `ceiling` (a node never
    /// loads a level its CPU lacks), and [`TargetError`] when an engine cannot be built.
    pub fn new(
        base: &Config,
        ceiling: CpuLevel,
        target_of: impl Fn(CpuLevel) -> CompileTarget,
    ) -> Result<Self, TargetError> {
        if !ceiling.runs_here() {
            return Err(TargetError::Level {
                level: ceiling.name().to_owned(),
                missing: if ceiling.arch() == std::env::consts::ARCH {
                    ceiling.missing_here().join(", ")
                } else {
                    format!("the {} architecture", ceiling.arch())
                },
            });
        }
        let levels = ceiling
            .and_below()
            .into_iter()
            .map(|level| Ok((level, target_of(level).engine_key(base)?)))
            .collect::<Result<Vec<_>, TargetError>>()?;
        let best = target_of(ceiling);
        let compiler =
            Engine::new(&best.compiling_config(base)?).map_err(|e| TargetError::Engine {
                target: best.to_string(),
                message: format!("{e:#}"),
            })?;
        Ok(Self {
            best_triple: best.triple().to_owned(),
            used: (0..=levels.len()).map(|_| AtomicU64::new(0)).collect(),
            levels,
            compiler,
            native_first: false,
            last: AtomicU64::new(0),
        })
    }

    /// Looks up the node's own entry, compiled for exactly this host's CPU (by a node or a
    /// `precompile` without levels on the same kind of machine), before any level: where a
    /// fleet's pool of identical machines has its own entries, they win over the portable ones.
    /// A full miss still compiles for the best level.
    #[must_use]
    pub fn native_first(mut self) -> Self {
        self.native_first = true;
        self
    }

    /// Whether the node's own entry is looked up first ([`Self::native_first`]).
    pub fn is_native_first(&self) -> bool {
        self.native_first
    }

    /// The levels looked up, best first, with the engine key of each.
    pub fn levels(&self) -> impl Iterator<Item = (CpuLevel, EngineKey)> + '_ {
        self.levels.iter().copied()
    }

    /// The best level: the one compiled for on a miss.
    pub fn best(&self) -> CpuLevel {
        self.levels[0].0
    }

    pub(crate) fn best_triple(&self) -> &str {
        &self.best_triple
    }

    pub(crate) fn best_key(&self) -> EngineKey {
        // Never empty: `new` starts from the ceiling itself.
        self.levels[0].1
    }

    /// The engine that compiles for the best level (to precompile with, or for a worker
    /// process to build the same way).
    pub fn compiler(&self) -> &Engine {
        &self.compiler
    }

    /// How many requests each answer served: the native entry (with
    /// [`native_first`](Self::native_first)), then each level, best first.
    pub fn used(&self) -> Vec<(Answer, u64)> {
        self.answers()
            .zip(&self.used)
            .map(|(answer, n)| (answer, n.load(Relaxed)))
            .filter(|(answer, _)| self.native_first || *answer != Answer::Native)
            .collect()
    }

    /// What answered the latest request.
    pub fn last_used(&self) -> Option<Answer> {
        let last = self.last.load(Relaxed);
        let index = usize::try_from(last.checked_sub(1)?).ok()?;
        self.answers().nth(index)
    }

    /// Every possible answer, in the order of `used`.
    fn answers(&self) -> impl Iterator<Item = Answer> + '_ {
        std::iter::once(Answer::Native).chain(self.levels.iter().map(|(l, _)| Answer::Level(*l)))
    }

    pub(crate) fn count(&self, answer: Answer) {
        if let Some(index) = self.answers().position(|a| a == answer) {
            self.used[index].fetch_add(1, Relaxed);
            self.last.store(index as u64 + 1, Relaxed);
        }
    }
}

/// The levels of the engines a cache was given, per engine.
pub(crate) type LevelsOf = Vec<(wasmtime::EngineWeak, Arc<CpuLevels>)>;
