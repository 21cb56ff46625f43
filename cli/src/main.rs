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

use clap::{Parser, Subcommand};

use crate::config::{Flags, OptLevel, Settings, parse_tier_list};
use crate::size::Size;

#[derive(Debug, Parser)]
#[command(name = "warmcache", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Settings that override the configuration file and `WARMCACHE_*` variables.
#[derive(Debug, clap::Args)]
struct Global {
    /// Configuration file (default: $XDG_CONFIG_HOME/warmcache/config.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Cache directory (default: $XDG_CACHE_HOME/warmcache, else ~/.cache/warmcache).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Tiers, fastest first: `memory[=SIZE]`, `fs[=DIR]`, `redb[=FILE]`, `rocksdb[=DIR]`,
    /// `s3=URL`, comma-separated.
    #[arg(long, global = true, value_name = "LIST", value_parser = tier_list)]
    tiers: Option<String>,
    /// Environment variable holding the integrity secret (a MAC key) for every tier.
    #[arg(long, global = true, value_name = "VAR")]
    secret_env: Option<String>,
    /// Cranelift optimization level: none, speed, speed_and_size.
    #[arg(long, global = true, value_name = "LEVEL", value_parser = opt_level)]
    opt_level: Option<OptLevel>,
    /// Enable wasm SIMD.
    #[arg(long, global = true, value_name = "BOOL")]
    simd: Option<bool>,
    /// Meter execution with fuel.
    #[arg(long, global = true, value_name = "BOOL")]
    fuel: Option<bool>,
    /// Enable epoch interruption.
    #[arg(long, global = true, value_name = "BOOL")]
    epochs: Option<bool>,
    /// Emit DWARF debug information.
    #[arg(long, global = true, value_name = "BOOL")]
    debug_info: Option<bool>,
    /// Compile for this target triple (such as aarch64-unknown-linux-gnu) at its baseline CPU
    /// instead of for this host: `precompile` fills a tier for a fleet of such machines, and
    /// nodes configured with the same target (and settings) find the entries.
    #[arg(long, global = true, value_name = "TRIPLE")]
    target: Option<String>,
    /// A Cranelift setting for the target, as NAME=VALUE (such as has_avx2=true); repeatable.
    #[arg(long = "cranelift-set", global = true, value_name = "NAME=VALUE", value_parser = cranelift_pair)]
    cranelift_set: Vec<String>,
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
    /// Evict least recently used entries from each disk tier down to SIZE.
    Gc {
        /// Size to shrink to, such as 500MiB or 2G.
        #[arg(long, value_name = "SIZE", value_parser = size)]
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
}

fn tier_list(s: &str) -> Result<String, String> {
    parse_tier_list(s).map(|_| s.to_owned())
}

fn opt_level(s: &str) -> Result<OptLevel, String> {
    s.parse()
}

fn cranelift_pair(s: &str) -> Result<String, String> {
    config::cranelift_pair(s).map(|_| s.to_owned())
}

fn size(s: &str) -> Result<Size, String> {
    s.parse().map_err(|e: size::SizeError| e.to_string())
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
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let g = &cli.global;
    let flags = Flags {
        config: g.config.clone(),
        cache_dir: g.cache_dir.clone(),
        tiers: g.tiers.clone(),
        secret_env: g.secret_env.clone(),
        opt_level: g.opt_level,
        simd: g.simd,
        fuel: g.fuel,
        epochs: g.epochs,
        debug_info: g.debug_info,
        target: g.target.clone(),
        cranelift_set: g.cranelift_set.clone(),
    };
    let settings = match Settings::load(&flags, &config::process_env) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Run(args) => commands::run::run(&settings, args, g.verbose),
        Command::Precompile(args) => commands::precompile::run(&settings, args),
        Command::Stats { json, format } => commands::stats::run(
            &settings,
            if json {
                commands::stats::Format::Json
            } else {
                format
            },
        ),
        Command::Ls { json } => commands::ls::run(&settings, json),
        Command::Verify { remove } => commands::verify::run(&settings, remove),
        Command::Audit(args) => commands::audit::run(&settings, args),
        Command::Gc { max_size } => commands::gc::run(&settings, max_size),
        Command::Clear { yes } => commands::clear::run(&settings, yes),
        Command::Config => commands::config::run(&settings),
        Command::Keygen { file } => commands::keygen::run(&file),
        Command::Bench(args) => commands::bench::run(&settings, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
