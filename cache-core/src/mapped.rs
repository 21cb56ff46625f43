//! Verifying an entry held in a local file through a read-only mapping, without reading it into
//! memory: the basis of mmap warm starts.

use std::fs::File;
use std::ops::Range;

use crate::envelope::{EnvelopeMeta, Integrity, Trust, VerifyError};
use crate::key::CacheKey;

/// A mapped entry file whose envelope verified.
pub(crate) struct MappedEntry {
    pub(crate) map: memmap2::Mmap,
    pub(crate) meta: EnvelopeMeta,
    pub(crate) payload: Range<usize>,
}

/// Why a mapped entry could not be used.
pub(crate) enum MapError {
    /// The file could not be mapped.
    Io(std::io::Error),
    /// The entry failed verification.
    Verify(VerifyError),
}

/// Maps `file` read-only and verifies the envelope in it; with `unchanged` (the file verified
/// before and has not changed since, on a tier under [`Trust::Secret`]), checks its structure,
/// key and kind without hashing it.
pub(crate) fn map_and_verify(
    integrity: &Integrity,
    trust: Trust,
    key: &CacheKey,
    kind: u32,
    file: &File,
    unchanged: bool,
) -> Result<MappedEntry, MapError> {
    let len = file.metadata().map_err(MapError::Io)?.len();
    if len == 0 {
        // Nothing to map (and mapping zero bytes is an error on some systems).
        return Err(MapError::Verify(VerifyError::Truncated { len: 0 }));
    }
    // SAFETY: a mapping is only sound while nobody modifies or truncates the file. Backends that
    // offer files (`Capabilities::local_files`) write each entry to a new file and rename it into
    // place, and remove entries by unlinking, so the inode behind an open handle never changes.
    // A process that writes into the cache directory in place can break this; the same holds for
    // wasmtime's own `deserialize_file`, which maps the file the same way.
    // Hashing reads every page, so fault them in at once; unhashed, only the header and trailer
    // are read here (the loader maps the file itself).
    let mut options = memmap2::MmapOptions::new();
    if !unchanged {
        options.populate();
    }
    #[allow(unsafe_code)]
    let map = unsafe { options.map(file) }.map_err(MapError::Io)?;
    let checked = if unchanged {
        integrity.check_unhashed(key, Some(kind), &map)
    } else {
        integrity.verify_for(trust, key, Some(kind), &map)
    };
    let (meta, payload) = checked.map_err(MapError::Verify)?;
    Ok(MappedEntry { map, meta, payload })
}
