//! Engine settings: those that change compiled code, and so enter every key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Sourced;
use warmcache_wasmtime::{CompileTarget, CpuLevel, CpuLevels};

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

/// What a cold miss answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColdStart {
    /// The optimized (Cranelift) artifact, compiled before the module runs.
    Optimized,
    /// Baseline (Winch) code at once, the optimized artifact compiled behind it.
    Baseline,
}

impl fmt::Display for ColdStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColdStart::Optimized => "optimized",
            ColdStart::Baseline => "baseline",
        })
    }
}

impl FromStr for ColdStart {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "optimized" => Ok(ColdStart::Optimized),
            "baseline" => Ok(ColdStart::Baseline),
            _ => Err(format!(
                "unknown cold start {s:?} (expected optimized or baseline)"
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
    /// `auto` or the name of the highest CPU level to load (see `CpuLevels`): artifacts are
    /// looked up by level instead of under this host's own engine key.
    pub cpu_level: Sourced<Option<String>>,
    /// With `cpu_level`: look up this host's own entry (native code, as a node without levels
    /// stores it) before any level.
    pub native_first: Sourced<bool>,
    /// What a cold miss answers with (baseline code is keyed by its own engine).
    pub cold_start: Sourced<ColdStart>,
}

/// The CPU level `name` names (`auto`: the best this CPU runs), checked against this CPU.
pub fn cpu_level(name: &str) -> Result<CpuLevel, String> {
    let names = || {
        CpuLevel::ALL
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if name == "auto" {
        return CpuLevel::supported_here().first().copied().ok_or_else(|| {
            format!(
                "no CPU level is known for this host's architecture (known: {})",
                names()
            )
        });
    }
    CpuLevel::named(name).ok_or_else(|| {
        format!(
            "unknown CPU level {name:?} (expected auto or one of {})",
            names()
        )
    })
}

impl EngineSettings {
    /// The explicit compile target, when one is configured.
    #[allow(unsafe_code)] // Cranelift settings, as `wasmtime compile --cranelift-set` takes them.
    pub fn compile_target(&self) -> Result<Option<CompileTarget>, String> {
        let Some(triple) = &self.target.value else {
            if let Some(first) = self.cranelift_set.value.first() {
                return Err(format!(
                    "cranelift setting {first:?} ({}) needs a target: set `target` too (the host's is {})",
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

    /// The CPU levels to look up, when `cpu_level` is set: its level and those below, each
    /// compiled with these settings' optimization level.
    pub fn cpu_levels(&self) -> Result<Option<CpuLevels>, String> {
        let Some(name) = &self.cpu_level.value else {
            if self.native_first.value {
                return Err(format!(
                    "native_first ({}) orders the lookup of CPU levels: set cpu_level too",
                    self.native_first.source
                ));
            }
            return Ok(None);
        };
        let source = &self.cpu_level.source;
        if self.target.value.is_some() || !self.cranelift_set.value.is_empty() {
            return Err(format!(
                "cpu_level ({source}) chooses the target and its CPU features: set either it or target and cranelift_set"
            ));
        }
        let ceiling = cpu_level(name).map_err(|e| format!("{e} ({source})"))?;
        let levels = CpuLevels::new(&self.base_config(), ceiling, |level| {
            self.level_target(level)
        })
        .map_err(|e| format!("{e} ({source})"))?;
        Ok(Some(match self.native_first.value {
            true => levels.native_first(),
            false => levels,
        }))
    }

    /// Baseline-first compiles for this configuration, when `cold_start` is `baseline`.
    pub fn baseline(&self) -> Result<Option<warmcache_wasmtime::Baseline>, String> {
        if self.cold_start.value == ColdStart::Optimized {
            return Ok(None);
        }
        let source = &self.cold_start.source;
        if self.cpu_level.value.is_some() || self.target.value.is_some() {
            return Err(format!(
                "cold_start = baseline ({source}) compiles for this host: it cannot be combined \
                 with cpu_level or target"
            ));
        }
        // A fleet's shared configuration may reach hosts Winch does not compile for: there,
        // a cold miss compiles optimized code, as without the setting.
        if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            tracing::warn!(
                "cold_start = baseline ({source}): Winch does not compile for {}; cold misses \
                 compile optimized code",
                std::env::consts::ARCH
            );
            return Ok(None);
        }
        let config = self.wasmtime_config()?;
        warmcache_wasmtime::Baseline::new(&config)
            .map(Some)
            .map_err(|e| format!("{e} ({source})"))
    }

    /// The explicit target of `level` with these settings' optimization level.
    #[allow(unsafe_code)] // The optimisation level, a Cranelift setting.
    fn level_target(&self, level: CpuLevel) -> CompileTarget {
        // SAFETY: the standard optimisation levels are always valid.
        unsafe {
            level
                .target()
                .setting("opt_level", &self.opt_level.value.to_string())
        }
    }

    /// An engine compiling for `level` with these settings, and the key its entries take
    /// (the key nodes with `cpu_level` look up).
    pub fn level_engine(
        &self,
        level: CpuLevel,
    ) -> Result<(wasmtime::Engine, warmcache_wasmtime::EngineKey), String> {
        let target = self.level_target(level);
        let base = self.base_config();
        let config = target.compiling_config(&base).map_err(|e| e.to_string())?;
        let engine = wasmtime::Engine::new(&config)
            .map_err(|e| format!("configuring wasmtime for {level}: {e:#}"))?;
        let key = target.engine_key(&base).map_err(|e| e.to_string())?;
        Ok((engine, key))
    }

    /// The settings recorded in every entry compiled with them, so `explain` can name the one
    /// in which two configurations differ (`WasmCache::describe_engine`).
    pub fn described(&self) -> Vec<(String, String)> {
        let mut fields = vec![
            ("opt_level".to_owned(), self.opt_level.value.to_string()),
            ("simd".to_owned(), self.simd.value.to_string()),
            ("fuel".to_owned(), self.fuel.value.to_string()),
            ("epochs".to_owned(), self.epochs.value.to_string()),
            ("debug_info".to_owned(), self.debug_info.value.to_string()),
        ];
        if let Some(triple) = &self.target.value {
            let cpu = match self.cranelift_set.value.is_empty() {
                true => "baseline".to_owned(),
                false => self.cranelift_set.value.join(","),
            };
            fields.push(("target".to_owned(), triple.clone()));
            fields.push(("cpu".to_owned(), cpu));
        }
        fields
    }

    /// [`described`](Self::described) for an engine compiling for `level`.
    pub fn described_level(&self, level: CpuLevel) -> Vec<(String, String)> {
        let mut fields = self.described();
        fields.push(("target".to_owned(), level.target().triple().to_owned()));
        fields.push(("cpu".to_owned(), level.name().to_owned()));
        fields
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
