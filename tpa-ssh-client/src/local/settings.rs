//! `~/.config/tpa/config.toml`: the user's optional defaults (CA URL, key file,
//! host patterns). Flags and environment variables win over it.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;

use super::dirs;

/// The settings file, parsed. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The CA's URL, used by `login` when `--ca` and `$TPA_CA_URL` are not set.
    pub ca_url: Option<String>,
    /// An OpenSSH private key of the user's own to certify instead of the TPA key
    /// (`<key_file>.pub` must sit next to it; the certificate is written to
    /// `<key_file>-cert.pub`). `~/` is expanded.
    pub key_file: Option<String>,
    /// Host patterns for `tpa-ssh config`, instead of the ones the CA announces.
    #[serde(default)]
    pub host_patterns: Vec<String>,
}

/// Where the settings file lives.
pub fn path() -> anyhow::Result<PathBuf> {
    Ok(dirs::config_dir()?.join("config.toml"))
}

/// The settings file, or the defaults when there is none.
pub fn load() -> anyhow::Result<Settings> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is invalid: {}; the keys are ca_url, key_file and host_patterns",
            path.display(),
            e.message()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_keys_and_refuses_unknown_ones() {
        let s: Settings = toml::from_str(
            "ca_url = \"https://ca.example.com\"\nkey_file = \"~/.ssh/id_ed25519\"\nhost_patterns = [\"web-*\"]\n",
        )
        .unwrap();
        assert_eq!(s.ca_url.as_deref(), Some("https://ca.example.com"));
        assert_eq!(s.host_patterns, ["web-*"]);
        assert!(toml::from_str::<Settings>("ca = \"x\"").is_err());
    }
}
