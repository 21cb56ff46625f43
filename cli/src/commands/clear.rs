//! `warmcache clear`: remove every entry, after confirmation.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use futures::executor::block_on;

use super::Outcome;
use crate::config::Settings;

pub fn run(settings: &Settings, yes: bool) -> Outcome {
    let stack = super::open_all(settings, false)?;
    let tiers: Vec<_> = stack.tiers.iter().collect();
    // Read-only tiers (configured so, or a previous secret's namespace) are never cleared.
    let names: Vec<&str> = tiers
        .iter()
        .filter(|t| !t.read_only)
        .map(|t| t.label.as_str())
        .collect();
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err("refusing to clear without confirmation; pass --yes".into());
        }
        print!("Remove every entry from {}? [y/N] ", names.join(", "));
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing removed");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut failed = false;
    for tier in tiers {
        if tier.read_only {
            println!("{}: skipped (read-only)", tier.label);
            continue;
        }
        match block_on(tier.backend().clear()) {
            Ok(()) => println!("{}: cleared", tier.label),
            Err(e) => {
                failed = true;
                eprintln!("error: {}: {e}", tier.label);
            }
        }
    }
    crate::history::reset(&settings.cache_dir.value)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
