//! `warmcache keygen`: a new Ed25519 signing key for a producer.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use warmcache_core::SigningKey;

use super::Outcome;

/// Writes a new private key to `path` (created with mode 0600; an existing file is never
/// replaced) and prints its public key and id, which consumers put in `trusted_keys`.
pub fn run(path: &Path) -> Outcome {
    let key = SigningKey::generate()?;
    let pem = key.to_pem()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            format!(
                "creating {}: {e} (an existing key is never replaced)",
                path.display()
            )
        })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let public = key.public_key();
    println!(
        "private key: {} (mode 0600; set signing_key_file on producers)",
        path.display()
    );
    println!("public key:  {public}");
    println!("key id:      {}", public.id());
    println!("consumers:   trusted_keys = [\"{}={public}\"]", public.id());
    Ok(ExitCode::SUCCESS)
}
