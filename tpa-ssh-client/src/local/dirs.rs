//! Where `tpa-ssh` keeps things: `$HOME`, and the XDG config and data
//! directories (`~/.config/tpa`, `~/.local/share/tpa`).

use std::path::PathBuf;

use anyhow::Context as _;

/// `$HOME`.
pub fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("$HOME is not set")
}

/// `$XDG_CONFIG_HOME/tpa` or `~/.config/tpa`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d).join("tpa")),
        _ => Ok(home()?.join(".config/tpa")),
    }
}

/// `$XDG_DATA_HOME/tpa` or `~/.local/share/tpa`.
pub fn data_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d).join("tpa")),
        _ => Ok(home()?.join(".local/share/tpa")),
    }
}

/// Expands a leading `~/` with `$HOME`.
pub fn expand_home(value: &str) -> anyhow::Result<PathBuf> {
    match value.strip_prefix("~/") {
        Some(rest) => Ok(home()?.join(rest)),
        None => Ok(PathBuf::from(value)),
    }
}
