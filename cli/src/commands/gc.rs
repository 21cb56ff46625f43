//! `warmcache gc`: shrink each disk tier to a size, least recently used first.

use std::process::ExitCode;

use futures::executor::block_on;
use warmcache_core::ErrorKind;

use super::Outcome;
use crate::config::Settings;
use crate::size::{Size, human};

pub fn run(settings: &Settings, max_size: Size) -> Outcome {
    let stack = super::open_all(settings, false)?;
    let mut failed = false;
    for tier in &stack.tiers {
        if tier.read_only {
            println!("{}: skipped (read-only)", tier.label);
            continue;
        }
        let spinner = crate::progress::spinner(&format!("{}: evicting", tier.label));
        let shrunk = block_on(tier.backend.shrink_to(max_size.0));
        spinner.finish_and_clear();
        match shrunk {
            Err(e) if e.kind() == ErrorKind::NotSupported => {
                println!("{}: skipped (no recency to evict by)", tier.label)
            }
            Ok(evicted) => {
                let usage = block_on(tier.backend().usage())?;
                println!(
                    "{}: evicted {evicted} entries, now {} in {} entries (limit {})",
                    tier.label,
                    human(usage.bytes),
                    usage.entries,
                    human(max_size.0)
                );
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {}: {e}", tier.label);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
