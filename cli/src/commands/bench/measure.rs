//! Taking the samples: a module's cold compile, its warm starts from each tier, wasmtime's own
//! cache and fresh instances, in interleaved rounds.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use warmcache_core::{Origin, Tier, Tiered};
use warmcache_wasmtime::{ArtifactKind, ContentHash, ModuleCache, Wasm};
use wasmtime::{Engine, Linker, Module, Store};

use super::Args;
use super::report::{Measurement, ModuleReport, summarize};
use crate::config::{Settings, TierConfig, TierKind};
use crate::stack::Stack;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The built-in module: 200 small functions with memory traffic, about 100 KB compiled.
pub(super) fn builtin_module() -> Vec<u8> {
    let mut wat = String::from("(module (memory (export \"memory\") 1)\n");
    wat.push_str("(func (export \"_start\") (drop (call $f0 (i32.const 7))))\n");
    for i in 0..200 {
        wat.push_str(&format!(
            "(func $f{i} (export \"f{i}\") (param i32) (result i32) local.get 0 i32.const {i} \
             i32.mul i32.const 3 i32.shl i32.const 65535 i32.and i32.load)\n"
        ));
    }
    wat.push(')');
    wat.into_bytes()
}

/// Instantiates `module` with every import trapping and runs its start function (or first
/// export without parameters) until it returns or traps at its first host call.
fn first_call(engine: &Engine, module: &Module) -> bool {
    let mut linker = Linker::<()>::new(engine);
    if linker.define_unknown_imports_as_traps(module).is_err() {
        return false;
    }
    let mut store = Store::new(engine, ());
    let _ = store.set_fuel(u64::MAX);
    store.set_epoch_deadline(u64::MAX);
    let Ok(instance) = linker.instantiate(&mut store, module) else {
        return false;
    };
    let entry = ["_start", "_initialize"]
        .into_iter()
        .find_map(|name| instance.get_typed_func::<(), ()>(&mut store, name).ok());
    if let Some(entry) = entry {
        // A trap at the first host call is the expected end.
        let _ = entry.call(&mut store, ());
        return true;
    }
    let export = module.exports().find_map(|e| {
        let f = e.ty().func()?.clone();
        (f.params().len() == 0).then(|| e.name().to_owned())
    });
    if let Some(func) = export.and_then(|name| instance.get_func(&mut store, &name)) {
        let mut results = vec![wasmtime::Val::I32(0); func.ty(&store).results().len()];
        let _ = func.call(&mut store, &[], &mut results);
    }
    true
}

/// A warm-start measurement over one storage tier.
struct TierProbe {
    name: String,
    cache: ModuleCache,
}

/// Opens the measured tiers under `dir` (local ones) or at their URL (remote ones), each alone
/// in its own stack, with the file tier measured both mapped and as bytes.
fn probes(settings: &Settings, dir: &Path) -> Result<Vec<TierProbe>, Box<dyn std::error::Error>> {
    let mut probes = Vec::new();
    for (i, config) in settings.tiers.value.iter().enumerate() {
        let variants: &[(&str, bool)] = match config.kind {
            TierKind::Memory => continue,
            TierKind::Fs => &[("fs (mmap)", true), ("fs (bytes)", false)],
            TierKind::Redb => &[("redb", true)],
            TierKind::Rocksdb => &[("rocksdb", true)],
            TierKind::S3 => &[("s3", true)],
            TierKind::Http => &[("http", true)],
        };
        for (j, (name, files)) in variants.iter().enumerate() {
            let mut tier: TierConfig = config.clone();
            if !tier.kind.is_remote() {
                tier.path = Some(dir.join(format!("{i}-{j}-{}", tier.kind.as_str())));
            }
            tier.size = None;
            let one = Settings {
                tiers: crate::config::Sourced {
                    value: vec![tier],
                    source: settings.tiers.source.clone(),
                },
                ..settings.clone()
            };
            let stack = Stack::open(&one)?;
            let Some(open) = stack.tiers.first() else {
                return Err(format!("tier {} could not be opened", config.location()).into());
            };
            let backend = match (&open.fs, files) {
                (Some(_), false) => Arc::new(
                    warmcache_fs::FsBackend::builder(open.config.path.clone().unwrap_or_default())
                        .offer_files(false)
                        .open()?,
                ) as Arc<dyn warmcache_core::Backend>,
                _ => open.backend(),
            };
            let tiers = Tiered::builder()
                .tier(Tier::new(backend).name(open.label.clone()))
                .integrity(stack.integrity.clone())
                .build();
            probes.push(TierProbe {
                name: (*name).to_owned(),
                cache: ModuleCache::builder().tiers(tiers).live_capacity(0).build(),
            });
        }
    }
    Ok(probes)
}

/// What one module's warm starts are measured against.
struct Subjects<'a> {
    engine: &'a Engine,
    wasm: &'a [u8],
    content: ContentHash,
    /// Each tier alone, holding the artifact.
    probes: Vec<TierProbe>,
    /// The in-process tier, holding the module.
    live: ModuleCache,
    /// An engine with wasmtime's own cache, holding the module.
    wasmtime_cached: Engine,
}

/// Samples in milliseconds, per measurement.
#[derive(Default)]
struct Samples {
    compile: Vec<f64>,
    hashed: Vec<f64>,
    unhashed: Vec<f64>,
    /// Loads and load-plus-first-calls, per probe.
    tiers: Vec<(Vec<f64>, Vec<f64>)>,
    wasmtime: Vec<f64>,
    wasmtime_first: Vec<f64>,
}

pub(super) fn measure_module(
    settings: &Settings,
    engine: &Engine,
    name: String,
    wasm: &[u8],
    args: &Args,
    dir: &Path,
) -> Result<ModuleReport, Box<dyn std::error::Error>> {
    tracing::info!("{name}: compiling");
    let started = Instant::now();
    let artifact = engine
        .precompile_module(wasm)
        .map_err(|e| format!("compiling {name}: {e:#}"))?;
    let compile_ms = ms(started.elapsed());
    let subjects = Subjects::prepare(settings, engine, wasm, &artifact, compile_ms, dir)?;
    let mut samples = Samples {
        compile: vec![compile_ms],
        tiers: vec![(Vec::new(), Vec::new()); subjects.probes.len()],
        ..Samples::default()
    };
    for run in 0..args.runs {
        tracing::info!("{name}: run {}/{}", run + 1, args.runs);
        subjects.round(run < args.compile_runs && run > 0, &mut samples)?;
    }
    for probe in &subjects.probes {
        let stats = probe.cache.stats();
        if stats.computes > 0 || stats.decode_errors > 0 {
            return Err(format!("{name}: tier {} did not answer", probe.name).into());
        }
    }
    let measurements = samples.summarize(&subjects.probes);
    let loaded = subjects.live.get_or_compile(engine, wasm)?;
    let instantiation =
        measure_instantiation(settings, engine, &loaded, wasm, &artifact, args, dir)
            .map_err(|e| format!("{name}: measuring instantiation: {e}"))?;
    Ok(ModuleReport {
        name,
        wasm_bytes: wasm.len() as u64,
        artifact_bytes: artifact.len() as u64,
        measurements,
        instantiation,
    })
}

/// Fails a load that should have come from a tier.
fn stored() -> std::io::Result<Vec<u8>> {
    Err(std::io::Error::other(
        "the artifact should have been stored",
    ))
}

impl<'a> Subjects<'a> {
    /// Stores `artifact` in every probe, the module in a live tier and in wasmtime's cache.
    fn prepare(
        settings: &Settings,
        engine: &'a Engine,
        wasm: &'a [u8],
        artifact: &[u8],
        compile_ms: f64,
        dir: &Path,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let content = ContentHash::of(wasm);
        let probes = probes(settings, dir)?;
        let origin = Origin::new(ArtifactKind::Module.envelope_kind(), "warmcache bench")
            .compute_ms(compile_ms as u64);
        for probe in &probes {
            let key = probe.cache.key_for(engine, &content);
            block_on(probe.cache.tiers().put(&key, &origin, artifact));
            probe.cache.flush();
        }
        let live = ModuleCache::builder().build();
        live.get_or_compile(engine, wasm)?;
        let mut cache_config = wasmtime::CacheConfig::new();
        cache_config.with_directory(dir.join("wasmtime-cache"));
        let mut config = settings.engine.wasmtime_config()?;
        config.cache(Some(wasmtime::Cache::new(cache_config)?));
        let wasmtime_cached = Engine::new(&config)?;
        tracing::info!("filling wasmtime's cache");
        Module::new(&wasmtime_cached, wasm)?;
        Ok(Self {
            engine,
            wasm,
            content,
            probes,
            live,
            wasmtime_cached,
        })
    }

    /// One sample of each measurement (and of a compile, when `compile`).
    fn round(
        &self,
        compile: bool,
        samples: &mut Samples,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (engine, wasm, content) = (self.engine, self.wasm, self.content);
        if compile {
            let started = Instant::now();
            engine.precompile_module(wasm)?;
            samples.compile.push(ms(started.elapsed()));
        }
        let batch = 1000u32;
        let started = Instant::now();
        for _ in 0..batch {
            let load = || -> std::io::Result<Vec<u8>> { Ok(wasm.to_vec()) };
            self.live
                .get_or_compile(engine, Wasm::hashed(content, load))?;
        }
        samples
            .hashed
            .push(ms(started.elapsed()) / f64::from(batch));
        let rounds = if wasm.len() > 1 << 20 { 3 } else { batch };
        let started = Instant::now();
        for _ in 0..rounds {
            self.live.get_or_compile(engine, wasm)?;
        }
        samples
            .unhashed
            .push(ms(started.elapsed()) / f64::from(rounds));
        for (probe, (loads, firsts)) in self.probes.iter().zip(samples.tiers.iter_mut()) {
            let started = Instant::now();
            let module = probe
                .cache
                .get_or_compile(engine, Wasm::hashed(content, stored))?;
            loads.push(ms(started.elapsed()));
            if first_call(engine, &module) {
                firsts.push(ms(started.elapsed()));
            }
        }
        let started = Instant::now();
        let module = Module::new(&self.wasmtime_cached, wasm)?;
        samples.wasmtime.push(ms(started.elapsed()));
        if first_call(&self.wasmtime_cached, &module) {
            samples.wasmtime_first.push(ms(started.elapsed()));
        }
        Ok(())
    }
}

impl Samples {
    fn summarize(self, probes: &[TierProbe]) -> Vec<Measurement> {
        let mut measurements = vec![
            summarize("compile".into(), "compile", self.compile, Vec::new()),
            summarize(
                "memory (hash supplied)".into(),
                "memory",
                self.hashed,
                Vec::new(),
            ),
            summarize(
                "memory (hashing wasm)".into(),
                "memory",
                self.unhashed,
                Vec::new(),
            ),
        ];
        for (probe, (loads, firsts)) in probes.iter().zip(self.tiers) {
            measurements.push(summarize(probe.name.clone(), "tier", loads, firsts));
        }
        measurements.push(summarize(
            "wasmtime's cache".into(),
            "wasmtime-cache",
            self.wasmtime,
            self.wasmtime_first,
        ));
        measurements
    }
}

/// Instantiations timed per sample: enough for about 20 ms, at least 3.
fn instantiations_per_sample(once: Duration) -> u32 {
    let per = once.as_secs_f64().max(1e-7);
    (0.02 / per).clamp(3.0, 10_000.0) as u32
}

/// Times fresh instances of the stored artifact: from the instance cache with the pooling
/// helper's engine over a file tier (mapped, copy-on-write memory), and with the configured
/// engine's default allocator through `Linker::instantiate`. Imports are defined as traps.
fn measure_instantiation(
    settings: &Settings,
    engine: &Engine,
    default_module: &Module,
    wasm: &[u8],
    artifact: &[u8],
    args: &Args,
    dir: &Path,
) -> Result<Vec<Measurement>, Box<dyn std::error::Error>> {
    let content = ContentHash::of(wasm);
    let mut pool = warmcache_wasmtime::PoolConfig::new();
    pool.live_instances(4).module(wasm)?;
    let pooled = Engine::new(pool.apply(&mut settings.engine.wasmtime_config()?))?;
    let files = Arc::new(warmcache_fs::FsBackend::builder(dir.join("instances")).open()?);
    let instances = warmcache_wasmtime::ModuleInstances::<()>::new(ModuleCache::new(
        Tiered::builder().tier(Tier::new(files)).build(),
    ));
    let origin = Origin::new(ArtifactKind::Module.envelope_kind(), "warmcache bench");
    let key = instances.artifacts().key_for(&pooled, &content);
    block_on(instances.artifacts().tiers().put(&key, &origin, artifact));
    let module = instances
        .artifacts()
        .get_or_compile(&pooled, Wasm::hashed(content, stored))?;
    let mut linker = Linker::<()>::new(&pooled);
    linker.define_unknown_imports_as_traps(&module)?;
    let linker = warmcache_wasmtime::NamedLinker::new(linker, "traps", 1);
    let pre = instances.instance_pre(&linker, Wasm::hashed(content, stored))?;
    if instances.artifacts().stats().computes > 0 {
        return Err("the file tier did not answer".into());
    }

    let mut default_linker = Linker::<()>::new(engine);
    default_linker.define_unknown_imports_as_traps(default_module)?;

    let time = |instantiate: &dyn Fn() -> Result<(), Box<dyn std::error::Error>>| {
        let started = Instant::now();
        instantiate()?;
        let per_sample = instantiations_per_sample(started.elapsed());
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            let started = Instant::now();
            for _ in 0..per_sample {
                instantiate()?;
            }
            samples.push(ms(started.elapsed()) / f64::from(per_sample));
        }
        Ok::<_, Box<dyn std::error::Error>>(samples)
    };
    let cached = time(&|| {
        let mut store = Store::new(&pooled, ());
        let _ = store.set_fuel(u64::MAX);
        pre.instantiate(&mut store)?;
        Ok(())
    })?;
    let plain = time(&|| {
        let mut store = Store::new(engine, ());
        let _ = store.set_fuel(u64::MAX);
        default_linker.instantiate(&mut store, default_module)?;
        Ok(())
    })?;
    Ok(vec![
        summarize(
            "instance cache (pooling, file tier)".into(),
            "instantiate",
            cached,
            Vec::new(),
        ),
        summarize(
            "Linker::instantiate (default allocator)".into(),
            "instantiate",
            plain,
            Vec::new(),
        ),
    ])
}
