//! `warmcache run`: a WASI command through the cache, like `wasmtime run`, instantiated from a
//! pre-instantiation of the instance cache (a fresh instance, its imports resolved once per
//! artifact and linker).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use warmcache_core::Stats;
use warmcache_wasmtime::{
    ComponentInstances, InstanceCache, Instantiate, ModuleInstances, NamedLinker, Wasm, WasmCache,
};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, InstancePre, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{InputKind, Outcome, input_kind};
use crate::config::Settings;
use crate::stack::Stack;

/// Exit status for a trap, as `wasmtime run` reports it on Unix (128 + SIGABRT).
const TRAP_EXIT: u8 = 134;

/// Arguments of `warmcache run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Preopen a host directory, as HOST or HOST::GUEST.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Set an environment variable for the guest.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = env_pair)]
    envs: Vec<(String, String)>,
    /// The program name the module sees as its first argument (default: the file's name), for
    /// multi-call binaries that choose their tool by it (clang/wasm-ld, busybox-style tools).
    #[arg(long, value_name = "NAME")]
    argv0: Option<String>,
    /// The module or component (binary or text).
    file: PathBuf,
    /// Arguments for the guest.
    #[arg(last = true)]
    args: Vec<String>,
}

fn env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// Where the compiled code came from, for `-v`.
fn describe(stack: &Stack, before: &Stats, after: &Stats) -> String {
    if after.computes > before.computes {
        let unpublished: Vec<&str> = after
            .tiers
            .iter()
            .zip(&before.tiers)
            .filter(|(a, b)| a.unpublished > b.unpublished)
            .map(|(a, _)| a.name.as_str())
            .collect();
        if !unpublished.is_empty() {
            return format!(
                "compiled here: the fleet's signed tier {} had no entry, and without a signing \
                 key the artifact stays in this host's tiers",
                unpublished.join(", ")
            );
        }
        return "compiled".to_owned();
    }
    if after.live_hits > before.live_hits {
        return "in-process tier".to_owned();
    }
    let mapped = if after.file_loads > before.file_loads {
        " (mmap)"
    } else {
        ""
    };
    for (i, tier) in after.tiers.iter().enumerate() {
        let earlier = before.tiers.get(i);
        if tier.hits > earlier.map_or(0, |t| t.hits) {
            let place = match stack.tiers.get(i).map(|t| t.config.kind.is_remote()) {
                Some(true) => "remote tier",
                _ => "disk tier",
            };
            let trusted = if tier.trusted_loads > earlier.map_or(0, |t| t.trusted_loads) {
                " (unchanged since it was verified: not hashed)"
            } else {
                ""
            };
            return format!("{place} {}{mapped}{trusted}", tier.name);
        }
    }
    "cache".to_owned()
}

pub fn run(settings: &Settings, args: Args, verbose: u8) -> Outcome {
    let head =
        read_head(&args.file).map_err(|e| format!("reading {}: {e}", args.file.display()))?;
    let memo = input_memo(settings);
    let stack = super::open(settings)?;
    if !super::Engine::runs_here(settings) {
        return Err(format!(
            "the configured target {} is not this host ({}): code compiled for it cannot run \
             here; use `warmcache precompile` to fill a tier for such machines",
            settings.engine.target.value.as_deref().unwrap_or_default(),
            warmcache_wasmtime::CompileTarget::host_triple()
        )
        .into());
    }
    let configured = super::engine(settings)?;
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stdio();
    let program = args.argv0.clone().unwrap_or_else(|| {
        args.file
            .file_name()
            .map_or_else(|| "main".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    builder.arg(&program);
    for arg in &args.args {
        builder.arg(arg);
    }
    for (k, v) in &args.envs {
        builder.env(k, v);
    }
    for dir in &args.dirs {
        let (host, guest) = dir.split_once("::").unwrap_or((dir.as_str(), dir.as_str()));
        builder
            .preopened_dir(host, guest, FsPerms::ReadWrite)
            .map_err(|e| format!("preopening {host}: {e:#}"))?;
    }

    let request = Request {
        settings,
        stack: &stack,
        args: &args,
        verbose,
        remembered: verbose > 0 && memo.as_ref().is_some_and(|m| m.remembers(&args.file)),
        memo: memo.as_ref(),
        configured: &configured,
        started: Instant::now(),
    };
    let code = match input_kind(&head) {
        InputKind::Module => {
            let instances = ModuleInstances::<WasiP1Ctx>::new(stack.module_cache());
            let linker = linker(&configured, "wasi-p1", wasi_p1_linker)?;
            let pre = request.prepare(&instances, &linker)?;
            let code = run_module(&pre, builder.build_p1());
            finish(settings, instances.artifacts(), &configured, verbose);
            code
        }
        InputKind::Component => {
            let instances = ComponentInstances::<Host>::new(stack.component_cache());
            let linker = linker(&configured, "wasi-p2", wasi_p2_linker)?;
            let pre = request.prepare(&instances, &linker)?;
            let code = run_component(pre, builder.build());
            finish(settings, instances.artifacts(), &configured, verbose);
            code
        }
    };
    Ok(code)
}

/// One `run` request: what it needs to ask the instance cache and report on itself.
struct Request<'a> {
    settings: &'a Settings,
    stack: &'a Stack,
    args: &'a Args,
    verbose: u8,
    /// Whether the input memo knew the file's hash (reported with `-v`).
    remembered: bool,
    memo: Option<&'a warmcache_wasmtime::InputMemo>,
    configured: &'a super::Engine,
    started: Instant,
}

impl Request<'_> {
    /// The file's pre-instantiation in `linker`, reported with `-v`: where its code came from,
    /// and why a compile missed.
    fn prepare<A: Instantiate<T>, T: 'static>(
        &self,
        instances: &InstanceCache<A, T>,
        linker: &NamedLinker<A::Linker>,
    ) -> Result<A::Pre, warmcache_wasmtime::Error> {
        let (configured, cache) = (self.configured, instances.artifacts());
        configured.pin(cache);
        let before = cache.stats();
        let pre = instances
            .instance_pre(linker, Wasm::file(&self.args.file, self.memo))
            // A failed compile is remembered in the tiers, and counted, too.
            .inspect_err(|_| finish(self.settings, cache, configured, 0))?;
        let after = cache.stats();
        let code = Code::of(A::pre_engine(&pre), &configured.engine);
        let seen = Seen {
            before: &before,
            after: &after,
            code,
        };
        report(
            self.stack,
            self.args,
            self.verbose,
            self.remembered,
            seen,
            self.started,
            configured,
        );
        // Baseline code's miss would find only the baseline entry it just stored.
        explain_miss(
            if code == Code::Baseline {
                0
            } else {
                self.verbose
            },
            (&before, &after),
            configured,
            cache,
            self.args,
        );
        Ok(pre)
    }
}

/// The WASI linker `make` builds for the configured engine, with its twin in the baseline
/// engine when baseline code comes first (baseline code belongs to that engine).
fn linker<L>(
    configured: &super::Engine,
    name: &str,
    make: impl Fn(&Engine) -> Result<L, String>,
) -> Result<NamedLinker<L>, String> {
    let linker = NamedLinker::new(make(&configured.engine)?, name, 1);
    Ok(match &configured.baseline {
        Some(baseline) => linker.with_baseline(make(baseline.engine())?),
        None => linker,
    })
}

/// The first 4 KiB of `path`: enough to tell a module from a component.
fn read_head(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)?
        .take(4096)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// The input memo in the cache directory (`inputs/`), so an unchanged wasm file is neither read
/// nor hashed on a warm start; without it (it cannot be created) every run hashes the file.
fn input_memo(settings: &Settings) -> Option<warmcache_wasmtime::InputMemo> {
    let dir = settings.cache_dir.value.join("inputs");
    match warmcache_wasmtime::InputMemo::open(&dir) {
        Ok(memo) => Some(memo.racy_window(std::time::Duration::from_millis(
            settings.input_racy_window_ms.value,
        ))),
        Err(e) => {
            tracing::warn!("not remembering input hashes in {}: {e}", dir.display());
            None
        }
    }
}

/// Which code a request answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Optimized,
    /// Baseline (Winch) code, the optimized artifact compiling behind it.
    Baseline,
}

impl Code {
    /// The code of an artifact of engine `of`, asked for with the configured `engine`.
    fn of(of: &Engine, engine: &Engine) -> Self {
        match Engine::same(of, engine) {
            true => Code::Optimized,
            false => Code::Baseline,
        }
    }
}

/// What one request did: the counters around it and the code it answered with.
struct Seen<'a> {
    before: &'a Stats,
    after: &'a Stats,
    code: Code,
}

fn report(
    stack: &Stack,
    args: &Args,
    verbose: u8,
    remembered: bool,
    seen: Seen<'_>,
    started: Instant,
    configured: &super::Engine,
) {
    if verbose > 0 {
        let source = describe(stack, seen.before, seen.after);
        let level = configured
            .levels
            .as_ref()
            .and_then(|levels| levels.last_used())
            .map(|level| format!(" {level}"));
        let how = match (source.as_str(), level, seen.code) {
            ("compiled", _, Code::Baseline) => {
                "compiled baseline code (Winch; optimized code compiles behind it)".to_owned()
            }
            (_, _, Code::Baseline) => {
                format!("loaded baseline code from {source} (optimized code compiles behind it)")
            }
            ("compiled", None, _) => source,
            ("compiled", Some(level), _) => format!("compiled for{level}"),
            (_, level, _) => format!("loaded{} from {source}", level.unwrap_or_default()),
        };
        let input = if remembered {
            " (input hash remembered: the file was not read)"
        } else {
            ""
        };
        eprintln!(
            "warmcache: {} {how} in {:.1} ms{input}",
            args.file.display(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
}

/// With `-v`, after a compile: one line on whether other configurations of the module are
/// cached, and which field differs.
fn explain_miss<A: warmcache_wasmtime::Artifact>(
    verbose: u8,
    (before, after): (&Stats, &Stats),
    configured: &super::Engine,
    cache: &WasmCache<A>,
    args: &Args,
) {
    if verbose == 0 || after.computes == before.computes {
        return;
    }
    let wasm = match super::precompile::read_regular(&args.file) {
        Ok(wasm) => wasm,
        Err(e) => return tracing::debug!("not explaining the miss: {e}"),
    };
    match super::explain::explain(configured, cache, &wasm) {
        Ok(explanation) => eprintln!("warmcache: miss: {}", explanation.summary()),
        Err(e) => tracing::debug!("not explaining the miss: {e}"),
    }
}

/// Waits for the optimized compile behind baseline code and background uploads, and records
/// the counters.
fn finish<A: warmcache_wasmtime::Artifact>(
    settings: &Settings,
    cache: &WasmCache<A>,
    configured: &super::Engine,
    verbose: u8,
) {
    let waited = Instant::now();
    cache.flush();
    if let Some(baseline) = configured.baseline.as_deref()
        && verbose > 0
    {
        let stats = baseline.stats();
        if stats.upgrades > 0 {
            eprintln!(
                "warmcache: optimized code stored {:.1} s after the baseline code ran ({:.1} s \
                 waited at exit); later runs use it",
                stats.upgrade_ms / 1e3,
                waited.elapsed().as_secs_f64()
            );
        } else if stats.upgrade_failures > 0 {
            eprintln!("warmcache: compiling the optimized code failed; see the log");
        }
    }
    let recorded = crate::history::record(
        &settings.cache_dir.value,
        &[cache.stats()],
        configured.levels.as_deref(),
        configured.baseline.as_deref(),
    );
    if let Err(e) = recorded {
        tracing::warn!("could not record stats: {e}");
    }
}

fn budget<T>(store: &mut Store<T>) {
    // Engines with fuel or epochs need a budget; without them these calls are no-ops or
    // refused, both harmless.
    let _ = store.set_fuel(u64::MAX);
    store.set_epoch_deadline(u64::MAX);
}

fn exit_code(error: wasmtime::Error) -> ExitCode {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return ExitCode::from(u8::try_from(exit.0).unwrap_or(1));
    }
    eprintln!("error: {error:?}");
    ExitCode::from(TRAP_EXIT)
}

fn wasi_p1_linker(engine: &Engine) -> Result<wasmtime::Linker<WasiP1Ctx>, String> {
    let mut linker = wasmtime::Linker::<WasiP1Ctx>::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx)
        .map_err(|e| format!("setting up WASI: {e:#}"))?;
    Ok(linker)
}

fn run_module(pre: &InstancePre<WasiP1Ctx>, wasi: WasiP1Ctx) -> ExitCode {
    // The store belongs to the code's engine: the baseline engine for baseline code.
    let mut store = Store::new(pre.module().engine(), wasi);
    budget(&mut store);
    let instance = match pre.instantiate(&mut store) {
        Ok(instance) => instance,
        Err(e) => {
            eprintln!("error: instantiating: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
        Ok(start) => start,
        Err(e) => {
            eprintln!("error: not a WASI command (no `_start`): {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match start.call(&mut store, ()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_code(e),
    }
}

struct Host {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn wasi_p2_linker(engine: &Engine) -> Result<wasmtime::component::Linker<Host>, String> {
    let mut linker = wasmtime::component::Linker::<Host>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| format!("setting up WASI: {e:#}"))?;
    Ok(linker)
}

fn run_component(pre: wasmtime::component::InstancePre<Host>, wasi: WasiCtx) -> ExitCode {
    // The store belongs to the code's engine: the baseline engine for baseline code.
    let engine = pre.component().engine().clone();
    let command = match CommandPre::new(pre) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("error: not a WASI command component: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut store = Store::new(
        &engine,
        Host {
            ctx: wasi,
            table: ResourceTable::new(),
        },
    );
    budget(&mut store);
    let command = match command.instantiate(&mut store) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("error: instantiating: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(())) => ExitCode::FAILURE,
        Err(e) => exit_code(e),
    }
}
