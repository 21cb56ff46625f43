//! Byte sizes as people write them: `512`, `64KiB`, `1.5GB`, `10G`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, parsed from a number with an optional unit.
///
/// Units are case-insensitive: `B`; `K`, `KiB` (1024) and `KB` (1000); likewise `M`, `G`, `T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed size {input:?}: {reason} (examples: 512, 64KiB, 1.5GB, 10G)")]
pub struct SizeError {
    input: String,
    reason: &'static str,
}

/// A size argument (`--max-size 2GiB`), for clap.
pub fn parse(s: &str) -> Result<Size, String> {
    s.parse().map_err(|e: SizeError| e.to_string())
}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| SizeError {
            input: input.to_owned(),
            reason,
        };
        let s = input.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        if number.is_empty() {
            return Err(err("no number"));
        }
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "ki" | "kib" => 1 << 10,
            "kb" => 1_000,
            "m" | "mi" | "mib" => 1 << 20,
            "mb" => 1_000_000,
            "g" | "gi" | "gib" => 1 << 30,
            "gb" => 1_000_000_000,
            "t" | "ti" | "tib" => 1 << 40,
            "tb" => 1_000_000_000_000,
            _ => return Err(err("unknown unit")),
        };
        if let Ok(whole) = number.parse::<u64>() {
            return whole
                .checked_mul(multiplier)
                .map(Size)
                .ok_or_else(|| err("too large"));
        }
        let value: f64 = number.parse().map_err(|_| err("not a number"))?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(err("too large"));
        }
        Ok(Size(bytes.round() as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human(self.0))
    }
}

/// `bytes` in binary units with one decimal, such as `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Size(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        for (input, bytes) in [
            ("512", 512),
            ("64KiB", 64 << 10),
            ("64k", 64 << 10),
            ("1KB", 1000),
            ("1.5GiB", 3 << 29),
            ("10G", 10 << 30),
            (" 2 mb ", 2_000_000),
            ("0", 0),
        ] {
            assert_eq!(input.parse::<Size>(), Ok(Size(bytes)), "{input}");
        }
    }

    #[test]
    fn refuses_malformed_sizes() {
        for input in ["", "GiB", "12XB", "1.2.3M", "-5", "99999999999999999999T"] {
            let err = input.parse::<Size>().unwrap_err();
            assert!(err.to_string().contains("malformed size"), "{input}: {err}");
        }
    }

    #[test]
    fn prints_human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
