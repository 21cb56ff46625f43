//! Reading a value back the ways a cache reads it, and saying what was seen in words a backend
//! author can act on.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use warmcache_core::{Backend, CacheKey, ErrorKind};

use crate::failure::Failure;
use crate::values;

/// The value under `key` through `get` and, for a backend that offers local files, through
/// `open_file` too: both must agree (a file may be refused per entry with `NotSupported`).
pub(crate) async fn read(b: &Arc<dyn Backend>, key: &CacheKey) -> Result<Option<Bytes>, Failure> {
    let got = b.get(key).await?;
    if !b.capabilities().local_files {
        return Ok(got);
    }
    match b.open_file(key).await {
        Err(e) if e.kind() == ErrorKind::NotSupported => {}
        Err(e) => return Err(Failure(format!("open_file({key}) failed: {e}"))),
        Ok(None) => {
            if let Some(value) = &got {
                return Err(Failure(format!(
                    "get({key}) returned {} but open_file returned no file",
                    describe(Some(value), value.len())
                )));
            }
        }
        Ok(Some(file)) => {
            let in_file = read_file(&file)?;
            match &got {
                None => {
                    return Err(Failure(format!(
                        "open_file({key}) handed out a file of {} bytes but get returned None",
                        in_file.len()
                    )));
                }
                Some(value) if in_file != value[..] => {
                    return Err(Failure(format!(
                        "open_file({key}) handed out {} where get returned {}",
                        describe_bytes(&in_file, value.len()),
                        describe(Some(value), value.len())
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(got)
}

/// All bytes of a file handed out by `open_file`, from its start.
pub(crate) fn read_file(mut file: &std::fs::File) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut out))
        .map_err(|e| Failure(format!("reading the file open_file handed out failed: {e}")))?;
    Ok(out)
}

/// What a read returned, for a message: `None`, an empty value, or which test value it is.
pub(crate) fn describe(got: Option<&Bytes>, expected_len: usize) -> String {
    match got {
        None => "None (missing)".to_owned(),
        Some(value) => describe_bytes(value, expected_len),
    }
}

fn describe_bytes(value: &[u8], expected_len: usize) -> String {
    if value.is_empty() {
        return "an empty value (Some of 0 bytes)".to_owned();
    }
    match values::identify(value, value.len()) {
        Some((tag, seq)) if value.len() == expected_len => {
            format!("{} bytes of test value ({tag}, {seq})", value.len())
        }
        Some((tag, seq)) => format!(
            "{} bytes of test value ({tag}, {seq}), expected {expected_len} bytes",
            value.len()
        ),
        None => format!(
            "{} bytes that are no value the check wrote (torn, truncated, mixed or damaged)",
            value.len()
        ),
    }
}

/// The expected value `(tag, seq)` of `len` bytes, read back as `got`: `Ok` when it is exactly
/// that, otherwise a failure saying what was seen instead.
pub(crate) fn expect_value(
    got: Option<&Bytes>,
    what: &str,
    (tag, seq): (u64, u64),
    len: usize,
) -> Result<(), Failure> {
    let exact = got.is_some_and(|v| {
        if len < 16 {
            v[..] == values::make(tag, seq, len)[..]
        } else {
            values::identify(v, len) == Some((tag, seq))
        }
    });
    if exact {
        return Ok(());
    }
    Err(Failure(format!(
        "{what}: expected {len} bytes of test value ({tag}, {seq}), got {}",
        describe(got, len)
    )))
}
