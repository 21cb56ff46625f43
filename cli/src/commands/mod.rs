//! One module per subcommand, and what they share.

pub mod bench;
pub mod clear;
pub mod config;
pub mod gc;
pub mod ls;
pub mod precompile;
pub mod run;
pub mod stats;
pub mod verify;

use std::process::ExitCode;

use crate::config::Settings;
use crate::stack::Stack;

/// What a command returns: its exit code, or an error printed as `error: ...`.
pub type Outcome = Result<ExitCode, Box<dyn std::error::Error>>;

/// What a wasm input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Module,
    Component,
}

/// Tells modules from components: by the binary header, or for the text format by its first
/// form.
pub fn input_kind(bytes: &[u8]) -> InputKind {
    if bytes.starts_with(b"\0asm") {
        return match bytes.get(6..8) {
            Some([1, 0]) => InputKind::Component,
            _ => InputKind::Module,
        };
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let mut rest = text.trim_start();
    // Skip line and block comments before the first form.
    loop {
        if let Some(after) = rest.strip_prefix(";;") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("(;") {
            rest = after.split_once(";)").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    if rest.starts_with("(component") {
        InputKind::Component
    } else {
        InputKind::Module
    }
}

/// The engine for the configured settings.
pub fn engine(settings: &Settings) -> Result<wasmtime::Engine, Box<dyn std::error::Error>> {
    wasmtime::Engine::new(&settings.engine.wasmtime_config())
        .map_err(|e| format!("configuring wasmtime: {e:#}").into())
}

/// Opens the configured tiers.
pub fn open(settings: &Settings) -> Result<Stack, Box<dyn std::error::Error>> {
    Ok(Stack::open(settings)?)
}

/// Opens every configured tier for a maintenance command, failing naming any that could not
/// be opened: clearing, checking or collecting fewer tiers than configured is not success.
/// With `as_is`, a damaged database is reported rather than moved aside (for `verify`).
pub fn open_all(settings: &Settings, as_is: bool) -> Result<Stack, Box<dyn std::error::Error>> {
    let stack = if as_is {
        Stack::open_as_is(settings)?
    } else {
        Stack::open(settings)?
    };
    stack.require_all()?;
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_modules_from_components() {
        assert_eq!(input_kind(b"\0asm\x01\0\0\0"), InputKind::Module);
        assert_eq!(input_kind(b"\0asm\x0d\0\x01\0"), InputKind::Component);
        assert_eq!(input_kind(b"(module)"), InputKind::Module);
        assert_eq!(
            input_kind(b";; a component\n(; block ;)\n  (component)"),
            InputKind::Component
        );
        assert_eq!(input_kind(b"garbage"), InputKind::Module);
    }
}
