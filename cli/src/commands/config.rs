//! `warmcache config`: the effective configuration and where each value came from.

use std::process::ExitCode;

use super::Outcome;
use crate::config::{Settings, Sourced};

fn line<T: std::fmt::Display>(key: &str, value: &Sourced<T>) {
    println!(
        "{key:<20} = {:<40} # {}",
        value.value.to_string(),
        value.source
    );
}

pub fn run(settings: &Settings) -> Outcome {
    match &settings.config_file {
        Some(path) => println!("# config file: {}", path.display()),
        None => println!("# config file: none"),
    }
    line(
        "cache_dir",
        &Sourced {
            value: settings.cache_dir.value.display(),
            source: settings.cache_dir.source.clone(),
        },
    );
    line(
        "secret_env",
        &Sourced {
            value: settings.secret_env.value.as_deref().unwrap_or("(none)"),
            source: settings.secret_env.source.clone(),
        },
    );
    line(
        "previous_secret_envs",
        &Sourced {
            value: settings.previous_secret_envs.value.join(","),
            source: settings.previous_secret_envs.source.clone(),
        },
    );
    // The signing key's place, never the key.
    line(
        "signing_key_file",
        &Sourced {
            value: settings
                .signing_key_file
                .value
                .as_ref()
                .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string()),
            source: settings.signing_key_file.source.clone(),
        },
    );
    line(
        "signing_key_env",
        &Sourced {
            value: settings
                .signing_key_env
                .value
                .as_deref()
                .unwrap_or("(none)"),
            source: settings.signing_key_env.source.clone(),
        },
    );
    line(
        "trusted_keys",
        &Sourced {
            value: settings
                .trusted_keys
                .value
                .iter()
                .filter_map(|k| k.parse::<warmcache_core::PublicKey>().ok())
                .map(|k| format!("{}={k}", k.id()))
                .collect::<Vec<_>>()
                .join(","),
            source: settings.trusted_keys.source.clone(),
        },
    );
    line(
        "revoked_keys",
        &Sourced {
            value: settings.revoked_keys.value.join(","),
            source: settings.revoked_keys.source.clone(),
        },
    );
    line("on_shared_miss", &settings.on_shared_miss);
    line("insecure_shared", &settings.insecure_shared);
    line("coordinate", &settings.coordinate);
    line("verify_every_load", &settings.verify_every_load);
    line("sealed_loads", &settings.sealed_loads);
    line("coordination_wait_ms", &settings.coordination_wait_ms);
    line("lease_ttl_ms", &settings.lease_ttl_ms);
    line("input_racy_window_ms", &settings.input_racy_window_ms);
    let e = &settings.engine;
    line("engine.opt_level", &e.opt_level);
    line(
        "engine.target",
        &crate::config::Sourced {
            value: e.target.value.clone().unwrap_or_else(|| "host".to_owned()),
            source: e.target.source.clone(),
        },
    );
    line(
        "engine.cranelift_set",
        &crate::config::Sourced {
            value: e.cranelift_set.value.join(","),
            source: e.cranelift_set.source.clone(),
        },
    );
    line("engine.simd", &e.simd);
    line("engine.fuel", &e.fuel);
    line("engine.epochs", &e.epochs);
    line("engine.debug_info", &e.debug_info);
    println!("# tiers, fastest first ({})", settings.tiers.source);
    for (i, tier) in settings.tiers.value.iter().enumerate() {
        // Credentials in a URL's user information or query never reach the output.
        let tier = tier.redacted();
        let mut options = Vec::new();
        if let Some(path) = &tier.path {
            options.push(format!("path={}", path.display()));
        }
        if let Some(url) = &tier.url {
            options.push(format!("url={url}"));
        }
        if let Some(size) = tier.size {
            options.push(format!("size={size}"));
        }
        if let Some(endpoint) = &tier.endpoint {
            options.push(format!("endpoint={endpoint}"));
        }
        if tier.read_only {
            options.push("read_only=true".to_owned());
        }
        println!(
            "tiers[{i}]             = {} {}",
            tier.kind.as_str(),
            options.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
