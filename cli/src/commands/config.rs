//! `warmcache config`: the effective configuration and where each value came from.

use std::process::ExitCode;

use super::Outcome;
use crate::config::{SETTINGS, Settings};

pub fn run(settings: &Settings) -> Outcome {
    match &settings.config_file {
        Some(path) => println!("# config file: {}", path.display()),
        None => println!("# config file: none"),
    }
    for spec in SETTINGS.iter().filter(|s| s.key != "tiers") {
        let (value, source) = settings.show(spec);
        println!("{:<20} = {value:<40} # {source}", spec.key);
    }
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
