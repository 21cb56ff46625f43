//! `warmcache`: run WebAssembly through a verified compile cache, precompile into it, and
//! inspect and maintain it.
//!
//! ```sh
//! warmcache run -v hello.wat          # compiles, then stores the artifact
//! warmcache run -v hello.wat          # loads it back (memory, disk, or remote tier)
//! warmcache precompile modules/       # fills the cache in parallel
//! warmcache stats                     # per-tier entries, bytes, hits, misses, corrupt, forged
//! ```
//!
//! Configuration: a TOML file, `WARMCACHE_*` variables and flags, in increasing precedence; with
//! none at all, a memory tier and a file tier under `$XDG_CACHE_HOME/warmcache`. See the
//! README for the format.

// A command line's job is printing; and a binary has no public API, so `pub` only marks what
// its modules share.
#![allow(clippy::print_stdout, clippy::print_stderr, unreachable_pub)]

mod chart;
mod commands;
mod config;
mod history;
mod progress;
mod size;
mod stack;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Settings;
use crate::size::Size;

#[derive(Debug, Parser)]
#[command(name = "warmcache", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options of every subcommand; the settings' flags are added from the settings table
/// ([`config::args`]).
#[derive(Debug, clap::Args)]
struct Global {
    /// Configuration file (default: $XDG_CONFIG_HOME/warmcache/config.toml when present).
    #[arg(long, global = true, value_name = "FILE", env = "WARMCACHE_CONFIG")]
    config: Option<PathBuf>,
    /// Say more: where modules came from (-v), and debug logs (-vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a WASI command module (preview 1) or component (preview 2) through the cache.
    Run(commands::run::Args),
    /// Compile files or directories (recursively, *.wasm) into the cache, in parallel.
    Precompile(commands::precompile::Args),
    /// Copy into the local tiers, from the shared ones, the entries this host's configuration
    /// loads, newest first (a new host starts warm); what is already local is skipped.
    Prefetch(commands::prefetch::Args),
    /// Per-tier entries, bytes, hits, misses, corrupt and forged counts.
    Stats {
        /// Print JSON (the same as `--format json`).
        #[arg(long)]
        json: bool,
        /// Output format: `table`, `json`, or `prometheus` (the text exposition format, for
        /// node_exporter's textfile collector).
        #[arg(long, value_enum, default_value = "table")]
        format: commands::stats::Format,
    },
    /// Show the key this configuration derives for a module, field by field, and every entry of
    /// the same module in every tier with the fields in which it differs: why a run missed.
    Explain(commands::explain::Args),
    /// List entries: key, kind, size, producer, created, last used.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every entry's tag in every tier; exits non-zero when any is bad.
    Verify {
        /// Remove the bad entries.
        #[arg(long)]
        remove: bool,
    },
    /// Recompile a sample of a tier's entries from their wasm and compare the artifacts byte for
    /// byte; exits non-zero naming any that differ (an entry signed by a stolen key, say).
    Audit(commands::audit::Args),
    /// Keep the compiled FILEs from eviction in the local tiers that keep pins (file tiers,
    /// redb, RocksDB), compiling them first when needed. Pinned entries count against a tier's
    /// size; a pin that would take them over 80% of it is refused.
    Pin {
        /// Modules or components (binary or text).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Let eviction take the compiled FILEs again.
    Unpin {
        /// Modules or components (binary or text).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Evict least recently used entries from each disk tier down to SIZE.
    Gc {
        /// Size to shrink to, such as 500MiB or 2G.
        #[arg(long, value_name = "SIZE", value_parser = size::parse)]
        max_size: Size,
    },
    /// Remove every entry from every tier.
    Clear {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// Print the effective configuration and where each value came from.
    Config,
    /// Write a new Ed25519 signing key for a producer to FILE (mode 0600) and print its public
    /// key, for consumers' `trusted_keys`.
    Keygen {
        /// Where to write the private key (never replaced if it exists).
        file: PathBuf,
    },
    /// Measure warm starts from each tier against a cold compile and wasmtime's own cache, and
    /// recommend a tier layout.
    Bench(commands::bench::Args),
    /// Compile the wasm on standard input to standard output: the worker of isolated compiles.
    #[command(hide = true)]
    CompileWorker {
        /// `module` or `component`.
        kind: String,
    },
}

fn init_logging(verbose: u8) {
    let default = if verbose >= 2 {
        "warn,warmcache=debug,warmcache_core=debug,warmcache_wasmtime=debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARMCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}

fn main() -> ExitCode {
    let matches = Cli::command().args(config::args()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.global.verbose);
    let g = &cli.global;
    let settings = match Settings::load(g.config.as_deref(), &matches, &config::process_env) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => commands::run::run(&settings, args, g.verbose),
        Command::Precompile(args) => commands::precompile::run(&settings, args),
        Command::Prefetch(args) => commands::prefetch::run(&settings, args),
        Command::Stats { json, format } => commands::stats::run(
            &settings,
            if json {
                commands::stats::Format::Json
            } else {
                format
            },
        ),
        Command::Explain(args) => commands::explain::run(&settings, args),
        Command::Ls { json } => commands::ls::run(&settings, json),
        Command::Verify { remove } => commands::verify::run(&settings, remove),
        Command::Audit(args) => commands::audit::run(&settings, args),
        Command::Pin { files } => commands::pin::run(&settings, &files, true),
        Command::Unpin { files } => commands::pin::run(&settings, &files, false),
        Command::Gc { max_size } => commands::gc::run(&settings, max_size),
        Command::Clear { yes } => commands::clear::run(&settings, yes),
        Command::Config => commands::config::run(&settings),
        Command::Keygen { file } => commands::keygen::run(&file),
        Command::Bench(args) => commands::bench::run(&settings, args),
        Command::CompileWorker { kind } => commands::compile_worker::run(&settings, &kind),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
