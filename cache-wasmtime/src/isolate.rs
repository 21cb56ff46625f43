//! Compiles in a worker process under limits, so that a module that takes minutes or gigabytes
//! to compile (hostile or not) costs a bounded child, never the host process.
//!
//! The protocol: the worker is run as `program args... KIND`, reads the wasm from its standard
//! input, and writes the artifact to its standard output and exits 0; or writes a message to
//! its standard error and exits non-zero. KIND is `module` or `component` for optimized code,
//! and `baseline-module` or `baseline-component` for baseline code (a cache with
//! [`Baseline`](crate::Baseline) code first: the Winch compile of a cold miss is as much the
//! input's to abuse as Cranelift's). It must build its engines with the settings of the engine
//! the cache is asked for: the parent loads what it returns (wasmtime checks the artifact
//! against the engine) before it stores it. [`Isolation::serve`] is that whole side, for the
//! embedder's own worker program.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Engine;

use crate::baseline::Baseline;
use crate::error::{Error, Limit};
use crate::key::{ArtifactKind, ContentHash};

/// The most of a worker's standard error kept for its error message.
const MAX_MESSAGE: u64 = 16 << 10;

/// What the kind argument starts with when the worker is to compile baseline code.
const BASELINE: &str = "baseline-";

/// How compiles run in a worker process, and under which limits. Set with
/// [`WasmCacheBuilder::isolate`](crate::WasmCacheBuilder::isolate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    memory: Option<u64>,
    /// Whether this worker compiles baseline (Winch) code ([`Self::for_baseline`]).
    baseline: bool,
}

impl Isolation {
    /// The default wall-time limit of one compile: ten minutes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

    /// Compiles by running `program` (see the module docs for what it must do), with a wall-time
    /// limit of [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT) and no memory limit.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            memory: None,
            baseline: false,
        }
    }

    /// Arguments given to the worker before the kind.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Kills a compile that runs longer than `timeout` (wall time); its CPU time is bounded to
    /// the same time on every core.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Bounds the worker's address space to `bytes` (Linux and other Unix systems; the worker's
    /// own code and libraries count too), and what this process reads back from it: a worker
    /// that writes more is stopped and the compile fails with [`Limit::Memory`].
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// The worker's side of the protocol, for the program an [`Isolation`] runs: reads the wasm
    /// from standard input, compiles it as `kind` (the argument the worker was given: `module`
    /// or `component` with `engine`, `baseline-module` or `baseline-component` with
    /// `baseline`'s engine), writes the artifact to standard output; on failure, writes
    /// `error: ` and the reason to standard error (the parent reads it there) and returns a
    /// failure. Build `engine` exactly as the engine of the caches that run this worker, and
    /// `baseline` from the same configuration when those caches
    /// [use baseline code](crate::WasmCache::use_baseline) (without it, a request for baseline
    /// code fails and the parent compiles optimized code instead); the parent rejects an
    /// artifact its engine cannot load.
    ///
    /// An embedder's binary can serve as its own worker:
    ///
    /// ```no_run
    /// use std::process::ExitCode;
    /// use warmcache_wasmtime::Isolation;
    ///
    /// fn my_engine() -> wasmtime::Engine {
    ///     wasmtime::Engine::default()
    /// }
    ///
    /// fn main() -> ExitCode {
    ///     let args: Vec<String> = std::env::args().collect();
    ///     if args.get(1).map(String::as_str) == Some("compile-worker") {
    ///         let kind = args.get(2).map_or("", String::as_str);
    ///         return Isolation::serve(&my_engine(), None, kind);
    ///     }
    ///     // The application: its caches compile through `Isolation::new(current_exe)
    ///     // .args(["compile-worker"])`.
    ///     ExitCode::SUCCESS
    /// }
    /// ```
    pub fn serve(engine: &Engine, baseline: Option<&Baseline>, kind: &str) -> ExitCode {
        match serve_once(engine, baseline, kind) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                // The protocol's error channel, read by the parent: this is a worker process.
                let _ = writeln!(std::io::stderr().lock(), "error: {message}");
                ExitCode::FAILURE
            }
        }
    }

    /// The same worker and limits, compiling baseline code.
    pub(crate) fn for_baseline(&self) -> Self {
        Self {
            baseline: true,
            ..self.clone()
        }
    }

    /// What a failure under these limits depends on: a failure remembered under other limits
    /// is not taken for one under these.
    pub(crate) fn context(&self) -> Vec<u8> {
        let mut context = b"isolated".to_vec();
        context.extend_from_slice(
            &u64::try_from(self.timeout.as_millis())
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        context.extend_from_slice(&self.memory.unwrap_or(0).to_le_bytes());
        context
    }

    /// Compiles `wasm` in a worker: the artifact, or why there is none.
    pub(crate) fn compile(
        &self,
        kind: ArtifactKind,
        content: ContentHash,
        wasm: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let worker_error = |what: &str, e: std::io::Error| Error::Worker {
            kind,
            content,
            message: format!("{what} the compile worker {}: {e}", self.program.display()),
        };
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .arg(match self.baseline {
                true => format!("{BASELINE}{kind}"),
                false => kind.to_string(),
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.limit(&mut command);
        let mut child = command.spawn().map_err(|e| worker_error("starting", e))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(worker_error(
                "talking to",
                std::io::Error::other("no pipes"),
            ));
        };
        let started = Instant::now();
        // An artifact is held whole in the worker before it is written, so a worker under a
        // memory limit cannot write a larger one: more is not an artifact, and this process
        // stops reading (and the worker) there instead of holding it.
        let most = self.memory.unwrap_or(u64::MAX);
        let pid = child.id();
        let (artifact, message, status) = std::thread::scope(|scope| {
            // A worker that stops reading (it failed early) must not block the parent's write.
            let feed = scope.spawn(move || stdin.write_all(wasm));
            let read = scope.spawn(move || {
                let mut artifact = Vec::new();
                stdout
                    .take(most.saturating_add(1))
                    .read_to_end(&mut artifact)?;
                if artifact.len() as u64 > most {
                    kill_group_of(pid);
                }
                Ok::<_, std::io::Error>(artifact)
            });
            let said = scope.spawn(move || {
                let mut message = String::new();
                let _ = stderr.take(MAX_MESSAGE).read_to_string(&mut message);
                message
            });
            let status = self.wait(&mut child, started);
            // Whatever the worker started dies with it: a child of its own holding the pipes
            // would otherwise keep the reads below waiting past every limit.
            kill_group(&child);
            let _ = feed.join();
            let artifact = read.join().unwrap_or_else(|_| Ok(Vec::new()));
            let message = said.join().unwrap_or_default();
            (artifact, message, status)
        });
        let status = status.map_err(|e| worker_error("waiting for", e))?;
        match (status, artifact) {
            (_, Ok(artifact)) if artifact.len() as u64 > most => {
                Err(self.over(kind, content, Limit::Memory(most)))
            }
            (Waited::Exited(code), Ok(artifact)) if code.success() => Ok(artifact),
            (Waited::Exited(code), Err(e)) if code.success() => {
                Err(worker_error("reading the artifact from", e))
            }
            (Waited::TimedOut, _) => Err(self.over(kind, content, Limit::WallTime(self.timeout))),
            (Waited::Exited(code), _) => Err(self.failed(kind, content, code, message)),
        }
    }

    fn over(&self, kind: ArtifactKind, content: ContentHash, limit: Limit) -> Error {
        tracing::debug!(%content, %limit, "the compile worker went over a limit and was stopped");
        Error::OverLimit {
            kind,
            content,
            limit,
        }
    }

    /// Why a worker that exited without an artifact failed: its own error, or a limit it ran
    /// into (the kernel's signal for CPU time; for memory, an allocation failure or a signal
    /// while a memory limit is set).
    fn failed(
        &self,
        kind: ArtifactKind,
        content: ContentHash,
        status: ExitStatus,
        message: String,
    ) -> Error {
        // A worker that reports errors as `error: ...` (the `warmcache` command does).
        let message = message.trim();
        let message = message
            .strip_prefix("error: ")
            .unwrap_or(message)
            .to_owned();
        let signal = exit_signal(status);
        if signal == Some(SIGXCPU) {
            return self.over(kind, content, Limit::CpuTime(self.cpu_limit()));
        }
        if let Some(bytes) = self.memory
            && (signal.is_some()
                || message.contains("memory allocation")
                || message.contains("out of memory"))
        {
            return self.over(kind, content, Limit::Memory(bytes));
        }
        if status.code().is_some() && !message.is_empty() {
            return Error::Compile {
                kind,
                content,
                source: Arc::new(wasmtime::Error::msg(message)),
            };
        }
        Error::Worker {
            kind,
            content,
            message: format!(
                "the compile worker {} ended with {status}{}{message}",
                self.program.display(),
                if message.is_empty() { "" } else { ": " }
            ),
        }
    }

    /// Waits for `child` until the wall-time limit, and kills it then.
    fn wait(&self, child: &mut std::process::Child, started: Instant) -> std::io::Result<Waited> {
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Waited::Exited(status));
            }
            let elapsed = started.elapsed();
            if elapsed >= self.timeout {
                kill_group(child);
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Waited::TimedOut);
            }
            std::thread::sleep(pause.min(self.timeout - elapsed));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// CPU time the worker may use: the wall-time limit on every core.
    fn cpu_limit(&self) -> Duration {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        self.timeout.saturating_mul(cores) + Duration::from_secs(1)
    }

    #[cfg(unix)]
    #[allow(unsafe_code)]
    fn limit(&self, command: &mut Command) {
        use rustix::process::{Resource, Rlimit, setrlimit};
        use std::os::unix::process::CommandExt;
        let cpu = self.cpu_limit().as_secs();
        let memory = self.memory;
        // A group of its own, which `kill_group` ends as a whole.
        command.process_group(0);
        // SAFETY: between fork and exec only `setrlimit` and `prctl`, plain system calls that
        // allocate nothing and take no lock, run in the child.
        unsafe {
            command.pre_exec(move || {
                // Out of the parent's process group, the worker would miss the terminal's
                // Ctrl-C: it dies with the thread that waits for it instead.
                #[cfg(target_os = "linux")]
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                // The soft limit signals SIGXCPU, which `failed` names; the hard one kills.
                let cpu = Rlimit {
                    current: Some(cpu),
                    maximum: Some(cpu + 1),
                };
                setrlimit(Resource::Cpu, cpu)?;
                if let Some(bytes) = memory {
                    let memory = Rlimit {
                        current: Some(bytes),
                        maximum: Some(bytes),
                    };
                    setrlimit(Resource::As, memory)?;
                }
                Ok(())
            });
        }
    }

    #[cfg(not(unix))]
    fn limit(&self, _command: &mut Command) {
        // Only the wall-time limit holds here.
    }
}

/// Kills what is left of the worker's process group (the worker itself has exited or was
/// killed). The group's number cannot name another group while the worker's children are in
/// it; once they are gone, this finds nothing.
fn kill_group(child: &std::process::Child) {
    kill_group_of(child.id());
}

/// Kills the process group of the worker `pid` (see [`kill_group`]).
#[cfg(unix)]
fn kill_group_of(pid: u32) {
    use rustix::process::{Pid, Signal, kill_process_group};
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

#[cfg(not(unix))]
fn kill_group_of(_pid: u32) {}

/// One compile of the worker's side: the artifact written, or why not.
fn serve_once(engine: &Engine, baseline: Option<&Baseline>, kind: &str) -> Result<(), String> {
    let (engine, kind) = match kind.strip_prefix(BASELINE) {
        None => (engine, kind),
        Some(kind) => match baseline {
            Some(baseline) => (baseline.engine(), kind),
            None => {
                return Err(format!(
                    "asked for baseline code ({BASELINE}{kind}), but this worker has no baseline \
                     engine: serve it with the Baseline the caches use"
                ));
            }
        },
    };
    let mut wasm = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut wasm)
        .map_err(|e| format!("reading the wasm from standard input: {e}"))?;
    let artifact = match kind {
        "module" => engine.precompile_module(&wasm),
        "component" => engine.precompile_component(&wasm),
        other => {
            return Err(format!(
                "unknown artifact kind {other:?} (expected module or component, or either \
                 after {BASELINE})"
            ));
        }
    }
    .map_err(|e| format!("{e:#}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&artifact)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the artifact to standard output: {e}"))
}

enum Waited {
    Exited(ExitStatus),
    TimedOut,
}

/// The signal for a process over its CPU-time limit.
const SIGXCPU: i32 = 24;

#[cfg(unix)]
fn exit_signal(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn exit_signal(_status: ExitStatus) -> Option<i32> {
    None
}
