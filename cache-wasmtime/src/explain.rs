//! Misses explained. Every entry this crate stores records, in its envelope, what its key was
//! derived from ([`Origin::inputs`](warmcache_core::Origin::inputs)): the key schema, the
//! artifact kind, the wasmtime version, the target and CPU, the engine settings the embedder
//! described ([`WasmCache::describe_engine`]), the content hash, the caller's extras and the
//! engine key's digest. [`WasmCache::explain`] derives the same fields for a configuration and
//! compares them with every entry of the same wasm in the tiers, field by field.

use std::fmt;

use warmcache_core::{BackendExt, CacheKey, MAX_TRAILER_LEN, inspect_trailer};
use wasmtime::Engine;

use crate::artifact::Artifact;
use crate::cache::WasmCache;
use crate::error::Result;
use crate::input::Wasm;

/// The version of the key's derivation, recorded as the `schema` field.
pub(crate) const KEY_SCHEMA: &str = "1";

/// Entries listed per tier at most when looking for other configurations of a wasm.
const MAX_LISTED: usize = 100_000;

/// One field a key is derived from, as `(name, value)`.
pub type Field = (String, String);

/// What [`WasmCache::explain`] found: this configuration's key and its inputs, and every entry
/// of the same wasm in the tiers with the fields in which it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation {
    /// The key this configuration derives (for CPU levels, the best level's).
    pub key: CacheKey,
    /// The fields it is derived from, in order.
    pub inputs: Vec<Field>,
    /// Entries of the same wasm and artifact kind, tier by tier.
    pub entries: Vec<Found>,
    /// Tiers not searched completely, and why (a failed listing, or more entries than are
    /// searched).
    pub unsearched: Vec<(String, String)>,
}

/// An entry of the same wasm in a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Found {
    /// The tier's name.
    pub tier: String,
    /// The entry's key.
    pub key: CacheKey,
    /// Where its inputs differ from this configuration's; empty when it is this
    /// configuration's own entry.
    pub differences: Vec<Difference>,
}

/// A field whose value differs between this configuration and an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Difference {
    /// The field's name.
    pub field: String,
    /// Its value here (`None`: this configuration does not record it).
    pub here: Option<String>,
    /// Its value in the entry (`None`: the entry does not record it).
    pub there: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unrecorded".to_owned());
        write!(
            f,
            "{}: {} here, {} in the entry",
            self.field,
            show(&self.here),
            show(&self.there)
        )
    }
}

impl Explanation {
    /// One line on why this configuration misses: whether other configurations of the wasm
    /// are stored, and the first one's differences (this configuration's own entry, if
    /// stored, is left out).
    pub fn summary(&self) -> String {
        let others: Vec<&Found> = self
            .entries
            .iter()
            .filter(|f| !f.differences.is_empty())
            .collect();
        let Some(first) = others.first() else {
            return "no other configuration of this module is cached in any tier".to_owned();
        };
        let differences: Vec<String> = first.differences.iter().map(|d| d.to_string()).collect();
        let (s, verb) = if others.len() == 1 {
            ("", "is")
        } else {
            ("s", "are")
        };
        format!(
            "{} other configuration{s} of this module {verb} cached; in the {} tier: {}",
            others.len(),
            first.tier,
            differences.join("; ")
        )
    }
}

/// `fields` as the `name=value` lines an entry records.
pub(crate) fn text(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{name}={}\n", value.replace('\n', " ")))
        .collect()
}

/// The fields of recorded `name=value` lines.
pub(crate) fn parse(text: &str) -> Vec<Field> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// Where `there` differs from `here`. The engine key's digest is named only when nothing
/// readable differs: it sums up settings that no field spells out.
fn differences(here: &[Field], there: &[Field]) -> Vec<Difference> {
    let value = |fields: &[Field], name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut names: Vec<&str> = here.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in there {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let differ = |name: &str| value(here, name) != value(there, name);
    let mut found: Vec<Difference> = names
        .iter()
        .filter(|n| **n != "engine" && differ(n))
        .map(|name| Difference {
            field: (*name).to_owned(),
            here: value(here, name),
            there: value(there, name),
        })
        .collect();
    if found.is_empty() && differ("engine") {
        found.push(Difference {
            field: "engine".to_owned(),
            here: value(here, "engine"),
            there: value(there, "engine"),
        });
    }
    found
}

impl<A: Artifact> WasmCache<A> {
    /// Explains what `engine` would look up for `wasm`: the key and its inputs, and every
    /// entry of the same wasm in the tiers with the fields in which it differs, so a miss
    /// says why ("opt_level: speed here, none in the entry"). Entries written before format
    /// version 4 record no inputs and are not found. The inputs are read without verifying
    /// the entries: they explain, they decide nothing.
    ///
    /// Lists every tier (up to 100,000 entries each) and reads each entry's trailer: a
    /// diagnostic, not for the request path of a large bucket.
    ///
    /// # Errors
    ///
    /// When `wasm` cannot be read to hash it ([`Error::Input`](crate::Error::Input)).
    pub fn explain<'a>(&self, engine: &Engine, wasm: impl Into<Wasm<'a>>) -> Result<Explanation> {
        let opened = wasm.into().open()?;
        let (key, inputs) = self.key_and_inputs(engine, &opened.content, opened.extras());
        let content = opened.content.to_string();
        let kind = A::KIND.envelope_kind();
        let mut explanation = Explanation {
            key,
            inputs,
            entries: Vec::new(),
            unsearched: Vec::new(),
        };
        let tiers = self.tiers();
        let names: Vec<String> = tiers.stats().into_iter().map(|t| t.name).collect();
        for (index, name) in names.into_iter().enumerate() {
            let Some(backend) = tiers.backend(index) else {
                continue;
            };
            let listed = match futures::executor::block_on(backend.list_all()) {
                Ok(listed) => listed,
                Err(e) => {
                    explanation.unsearched.push((name, e.to_string()));
                    continue;
                }
            };
            if listed.len() > MAX_LISTED {
                explanation.unsearched.push((
                    name.clone(),
                    format!(
                        "{} entries; the first {MAX_LISTED} were searched",
                        listed.len()
                    ),
                ));
            }
            for info in listed.into_iter().take(MAX_LISTED) {
                let tail = backend.get_tail(&info.key, MAX_TRAILER_LEN as u64);
                let Ok(Some(tail)) = futures::executor::block_on(tail) else {
                    continue;
                };
                let Ok(meta) = inspect_trailer(&tail, info.size) else {
                    continue;
                };
                let fields = parse(&meta.inputs);
                let same_wasm = fields.iter().any(|(n, v)| n == "content" && *v == content);
                if meta.kind != kind || !same_wasm {
                    continue;
                }
                explanation.entries.push(Found {
                    tier: name.clone(),
                    key: info.key,
                    differences: differences(&explanation.inputs, &fields),
                });
            }
        }
        Ok(explanation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn differences_name_readable_fields_before_the_digest() {
        let here = fields(&[("opt_level", "speed"), ("simd", "true"), ("engine", "aa")]);
        let there = fields(&[("opt_level", "none"), ("simd", "true"), ("engine", "bb")]);
        let found = differences(&here, &there);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "opt_level: speed here, none in the entry"
        );
        let there = fields(&[("opt_level", "speed"), ("simd", "true"), ("engine", "bb")]);
        assert_eq!(differences(&here, &there)[0].field, "engine");
        assert!(differences(&here, &here).is_empty());
        let there = fields(&[("opt_level", "speed"), ("engine", "aa"), ("fuel", "true")]);
        let found: Vec<String> = differences(&here, &there)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "simd: true here, unrecorded in the entry",
                "fuel: unrecorded here, true in the entry"
            ]
        );
    }

    #[test]
    fn recorded_lines_read_back() {
        let original = fields(&[("target", "x86_64 has_avx=true"), ("extras", "")]);
        assert_eq!(parse(&text(&original)), original);
        assert_eq!(parse("no equals sign\nk=v=w\n"), fields(&[("k", "v=w")]));
    }
}
