//! `warmcache verify`: every entry's tag, in every persistent tier.

use std::process::ExitCode;

use futures::executor::block_on;
use warmcache_core::BackendExt;

use super::Outcome;
use crate::config::Settings;

/// The whole stored value, read so that checking it does not count as a use for eviction:
/// through `get_tail`, which records none. A bucket records no use on `get` either, and
/// providers answer a suffix range longer than the object differently, so it is read whole.
pub(super) async fn read_without_use(
    tier: &crate::stack::OpenTier,
    key: &warmcache_core::CacheKey,
) -> warmcache_core::Result<Option<warmcache_core::bytes::Bytes>> {
    let backend = tier.backend();
    if tier.config.kind.is_remote() {
        backend.get(key).await
    } else {
        backend.get_tail(key, u64::MAX).await
    }
}

pub fn run(settings: &Settings, remove: bool) -> Outcome {
    let stack = super::open_all(settings, true)?;
    let (mut checked, mut bad, mut removed) = (0u64, 0u64, 0u64);
    for tier in stack.tiers.iter() {
        let backend = tier.backend();
        let keys = block_on(backend.list_all()).map_err(|e| format!("{}: {e}", tier.label))?;
        let bar = crate::progress::bar(keys.len() as u64, &tier.label);
        for info in keys {
            checked += 1;
            bar.inc(1);
            let problem = match block_on(read_without_use(tier, &info.key)) {
                Ok(Some(bytes)) => stack
                    .integrity
                    .verify_for(tier.trust(), &info.key, None, &bytes)
                    .err()
                    .map(|e| e.to_string()),
                // Gone since the listing: nothing to check.
                Ok(None) => None,
                Err(e) => Some(format!("unreadable: {e}")),
            };
            let Some(problem) = problem else {
                continue;
            };
            bad += 1;
            bar.suspend(|| println!("bad: {} {}: {problem}", tier.label, info.key));
            // In a bucket, what fails here may be another node's entry (another secret) or a
            // forgery: deleting it could empty the fleet's cache, so it is only reported.
            if remove && (tier.read_only || backend.capabilities().shared) {
                println!(
                    "kept: {} {}: not removed from a shared or read-only tier",
                    tier.label, info.key
                );
            } else if remove {
                match block_on(backend.delete(&info.key)) {
                    Ok(()) => removed += 1,
                    Err(e) => eprintln!("error: removing {} from {}: {e}", info.key, tier.label),
                }
            }
        }
        bar.finish_and_clear();
    }
    println!(
        "checked {checked} entries in {} tiers: {bad} bad{}",
        stack.tiers.len(),
        if remove {
            format!(", {removed} removed")
        } else {
            String::new()
        }
    );
    Ok(if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
