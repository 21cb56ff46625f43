//! `warmcache ls`: every entry of every persistent tier.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::executor::block_on;
use serde::Serialize;
use warmcache_core::{
    Backend, BackendExt, EnvelopeMeta, KeyInfo, MAX_TRAILER_LEN, inspect, inspect_trailer,
};
use warmcache_wasmtime::ArtifactKind;

use super::Outcome;
use crate::config::Settings;
use crate::size::human;

#[derive(Debug, Serialize)]
struct Entry {
    tier: String,
    key: String,
    kind: String,
    size: u64,
    producer: Option<String>,
    /// The key id the entry names as its signer: a claim, as listed without verifying.
    signer: Option<String>,
    created: Option<String>,
    last_used: Option<String>,
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn kind_name(kind: u32) -> String {
    match ArtifactKind::from_envelope_kind(kind) {
        Some(k) => k.as_str().to_owned(),
        None if kind == u32::from_le_bytes(*b"winc") => "incremental".to_owned(),
        None if kind == warmcache_core::FAILURE_KIND => "failure".to_owned(),
        None => format!("{kind:#010x}"),
    }
}

/// Trailer reads in flight at once (they overlap on remote tiers).
const READS_IN_FLIGHT: usize = 16;

/// The entry's metadata from its trailer; from the whole entry when the trailer disagrees with
/// the listed size (it changed since the listing). `None` when it cannot be read.
pub(super) async fn trailer(backend: &dyn Backend, info: &KeyInfo) -> Option<EnvelopeMeta> {
    let tail = backend
        .get_tail(&info.key, MAX_TRAILER_LEN as u64)
        .await
        .ok()??;
    match inspect_trailer(&tail, info.size) {
        Ok(meta) => Some(meta),
        Err(_) => inspect(&backend.get(&info.key).await.ok()??).ok(),
    }
}

pub fn run(settings: &Settings, json: bool) -> Outcome {
    let stack = super::open(settings)?;
    let mut entries = Vec::new();
    for tier in stack.tiers.iter() {
        let backend = tier.backend();
        // A file tier lists its entries with their last use in one scan.
        let listed = match &tier.fs {
            Some(fs) => block_on(fs.entries_with_use()).map(|all| {
                let used: HashMap<_, _> = all.iter().map(|(info, t)| (info.key, *t)).collect();
                (all.into_iter().map(|(info, _)| info).collect(), used)
            }),
            None => block_on(backend.list_all()).map(|keys| (keys, HashMap::new())),
        };
        let (keys, used): (Vec<KeyInfo>, HashMap<_, _>) =
            listed.map_err(|e| format!("{}: {e}", tier.label))?;
        let bar = crate::progress::bar(keys.len() as u64, &tier.label);
        // Only each entry's trailer is read: a ranged read of an object, the end of a file.
        let reads = futures::stream::iter(&keys)
            .map(|info| async {
                let meta = trailer(backend.as_ref(), info).await;
                bar.inc(1);
                meta
            })
            .buffered(READS_IN_FLIGHT)
            .collect::<Vec<_>>();
        // A local tier's reads are quick system calls: run them here rather than hand each to
        // a thread (nothing interrupts a listing). A remote tier's overlap in flight.
        let metas = if backend.capabilities().shared {
            block_on(reads)
        } else {
            block_on(warmcache_core::backend::inline_allowed(reads))
        };
        bar.finish_and_clear();
        for (info, meta) in keys.iter().zip(metas) {
            entries.push(Entry {
                tier: tier.label.clone(),
                key: info.key.to_hex(),
                kind: meta
                    .as_ref()
                    .map_or_else(|| "unreadable".to_owned(), |m| kind_name(m.kind)),
                size: info.size,
                producer: meta.as_ref().map(|m| m.producer.clone()),
                signer: meta.as_ref().and_then(|m| m.signer.clone()),
                created: meta
                    .as_ref()
                    .map(|m| time(UNIX_EPOCH + Duration::from_millis(m.created_ms))),
                last_used: used.get(&info.key).map(|t| time(*t)),
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in &entries {
        // The producer comes from the entry, which anyone who can write the tier wrote:
        // control characters and terminal escapes are shown escaped, never sent to the terminal.
        println!(
            "{}  {:<10} {:>10}  created {}  used {}  {}{}  [{}]",
            &e.key[..16],
            e.kind,
            human(e.size),
            e.created.as_deref().unwrap_or("-"),
            e.last_used.as_deref().unwrap_or("-"),
            e.producer.as_deref().unwrap_or("-").escape_debug(),
            e.signer
                .as_deref()
                .map_or_else(String::new, |s| format!("  signed by {s}")),
            e.tier.escape_debug()
        );
    }
    println!("{} entries", entries.len());
    Ok(ExitCode::SUCCESS)
}
