//! The file layer: a TOML document whose keys are the settings' keys ([`SETTINGS`]), an
//! `[engine]` table for the `engine.` ones, and `[[tiers]]` tables. Errors name the file, the
//! line and the key.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::table::{SETTINGS, spec};
use super::tiers::TierConfig;
use super::{ConfigError, Settings, Source};

/// The `[[tiers]]` tables, read with serde for their options' types; everything else is read
/// key by key below.
#[derive(Debug, Default, Deserialize)]
struct FileTiers {
    tiers: Option<Spanned<Vec<Spanned<TierConfig>>>>,
}

/// One file being applied.
struct File<'a> {
    path: &'a Path,
    text: &'a str,
}

impl File<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn error(&self, span: &Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::File {
            path: self.path.to_owned(),
            line: self.line(span),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn at(&self, span: &Range<usize>) -> Source {
        Source::File {
            path: self.path.to_owned(),
            line: self.line(span),
        }
    }

    /// A parse error of the whole document, at the key on its line.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let start = self.text[..span.start.min(self.text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = self.text[start..].lines().next().unwrap_or("");
        let key = match line.split_once('=') {
            Some((key, _)) => key.trim().trim_matches('"'),
            None => line.trim(),
        };
        self.error(&span, key, e.message().trim())
    }
}

impl Settings {
    /// Applies the configuration file at `path`, holding `text`.
    pub(super) fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let file = File { path, text };
        let doc = DeTable::parse(text).map_err(|e| file.toml_error(&e))?;
        for (key, value) in doc.get_ref() {
            match key.get_ref().as_ref() {
                "tiers" => {}
                "engine" => {
                    let Some(engine) = value.get_ref().as_table() else {
                        return Err(file.error(&value.span(), "engine", "expected a table"));
                    };
                    for (key, value) in engine {
                        let name = format!("engine.{}", key.get_ref());
                        self.apply_value(&file, &name, key.span(), value)?;
                    }
                }
                name => self.apply_value(&file, name, key.span(), value)?,
            }
        }
        let tiers: FileTiers = toml::from_str(text).map_err(|e| file.toml_error(&e))?;
        if let Some(tiers) = tiers.tiers {
            let span = tiers.span();
            let mut list = Vec::new();
            for tier in tiers.into_inner() {
                if let Some(problem) = tier.get_ref().problem() {
                    return Err(file.error(&tier.span(), "tiers", problem));
                }
                list.push(tier.into_inner());
            }
            self.tiers.set(list, file.at(&span));
        }
        Ok(())
    }

    fn apply_value(
        &mut self,
        file: &File<'_>,
        name: &str,
        key_span: Range<usize>,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<(), ConfigError> {
        let Some(spec) = spec(name).filter(|s| s.key != "tiers") else {
            let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
            let message = format!("unknown setting; the settings are {}", known.join(", "));
            return Err(file.error(&key_span, key_name(name), message));
        };
        let items = text_items(value.get_ref())
            .map_err(|message| file.error(&value.span(), key_name(name), message))?;
        self.set(spec, items, file.at(&value.span()))
            .map_err(|message| file.error(&value.span(), key_name(name), message))
    }
}

/// The key as written in its table.
fn key_name(name: &str) -> &str {
    name.strip_prefix("engine.").unwrap_or(name)
}

/// A value as the text every layer gives a setting: a scalar as one item, an array's scalars
/// as items.
fn text_items(value: &DeValue<'_>) -> Result<Vec<String>, String> {
    match value {
        DeValue::Array(array) => array.iter().map(|item| scalar(item.get_ref())).collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

fn scalar(value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Boolean(b) => Ok(b.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(|i| i.to_string())
            .map_err(|e| format!("integer {i}: {e}")),
        other => Err(format!(
            "expected a string, a boolean or an integer, got {}",
            other.type_str()
        )),
    }
}

/// The configuration file to read: `--config` (or `WARMCACHE_CONFIG`), else
/// `$XDG_CONFIG_HOME/warmcache/config.toml` (or `~/.config/...`) when it exists. The flag says
/// whether the file was named, so that a missing one is an error.
pub(super) fn config_path(named: Option<&Path>, env: super::Env<'_>) -> Option<(PathBuf, bool)> {
    if let Some(path) = named {
        return Some((path.to_owned(), true));
    }
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let path = base.join("warmcache").join("config.toml");
    path.exists().then_some((path, false))
}
