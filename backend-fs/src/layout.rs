//! Names in the cache directory, and which of them are ours.
//!
//! ```text
//! root/WARMCACHE-FS          marker: this directory holds a warmcache file tier
//! root/entries/ab/<64 hex>   one immutable entry file per key (first byte's hex as fan-out)
//! root/entries/ab/.<64 hex>.<pid>.<nonce>.tmp   a write in progress (or left by a crash)
//! root/locks/<64 hex>        the lock a process holds while it computes that key
//! root/pins/<64 hex>         an empty file: eviction never takes that key's entry
//! root/pins/.lock            held while a pin's room is checked and its file created
//! root/keys/<key id>/...     with a namespace: the same layout, one per secret
//! ```
//!
//! Only names of exactly these shapes are ever read, counted or deleted; anything else in the
//! directory is left alone.

use std::path::{Path, PathBuf};

use warmcache_core::CacheKey;

pub(crate) const MARKER: &str = "WARMCACHE-FS";
pub(crate) const ENTRIES: &str = "entries";
pub(crate) const LOCKS: &str = "locks";
pub(crate) const KEYS: &str = "keys";
pub(crate) const PINS: &str = "pins";
/// The directory's inflation for eviction by cost (8 bytes, a little-endian `f64`).
pub(crate) const INFLATION: &str = "inflation";

pub(crate) fn entries_dir(root: &Path) -> PathBuf {
    root.join(ENTRIES)
}

pub(crate) fn fan_dir(root: &Path, key: &CacheKey) -> PathBuf {
    entries_dir(root).join(&key.to_hex()[..2])
}

pub(crate) fn entry_path(root: &Path, key: &CacheKey) -> PathBuf {
    fan_dir(root, key).join(key.to_hex())
}

pub(crate) fn locks_dir(root: &Path) -> PathBuf {
    root.join(LOCKS)
}

pub(crate) fn lock_path(root: &Path, key: &CacheKey) -> PathBuf {
    locks_dir(root).join(key.to_hex())
}

pub(crate) fn pins_dir(root: &Path) -> PathBuf {
    root.join(PINS)
}

pub(crate) fn pin_path(root: &Path, key: &CacheKey) -> PathBuf {
    pins_dir(root).join(key.to_hex())
}

pub(crate) fn temp_name(key: &CacheKey, nonce: u64) -> String {
    format!(".{}.{}.{nonce:016x}.tmp", key.to_hex(), std::process::id())
}

/// Whether `name` is a two-hex-digit fan-out directory.
pub(crate) fn is_fan(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The key of an entry file called `name` inside fan-out directory `fan`.
pub(crate) fn parse_entry(fan: &str, name: &str) -> Option<CacheKey> {
    if name.len() != 64 || !name.starts_with(fan) {
        return None;
    }
    let key: CacheKey = name.parse().ok()?;
    (key.to_hex() == name).then_some(key)
}

/// Whether `name` is one of our temporary files. The pid in it is only for people reading a
/// listing: it says nothing about the writer's liveness across PID namespaces or hosts.
pub(crate) fn is_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    matches!(parts.as_slice(), [hex, pid, nonce]
        if hex.len() == 64
            && hex.parse::<CacheKey>().is_ok()
            && pid.parse::<u32>().is_ok()
            && nonce.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        let key = CacheKey::from_bytes([0xa7; 32]);
        let hex = key.to_hex();
        assert_eq!(parse_entry("a7", &hex), Some(key));
        assert_eq!(parse_entry("a8", &hex), None);
        assert_eq!(parse_entry("a7", &hex.to_uppercase()), None);
        assert_eq!(parse_entry("a7", "notes.txt"), None);
        let temp = temp_name(&key, 42);
        assert!(is_temp(&temp));
        assert!(!is_temp(".something.tmp"));
        assert_eq!(parse_entry("a7", &temp), None);
        assert!(is_fan("a7") && !is_fan("A7") && !is_fan("a7b"));
    }
}
