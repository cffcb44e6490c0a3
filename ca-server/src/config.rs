//! `tpa.toml`: the CA's configuration, parsed strictly (unknown keys are errors).
//!
//! Relative paths are resolved against the directory of the configuration file,
//! so a data directory can be moved as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tpa_core::{HumanDuration, Policy};

mod roles;
mod webhooks;

pub use roles::{EXAMPLE_ROLES, WorkflowConfig};
pub use webhooks::{EVENT_KINDS, WebhookConfig, WebhookFormat};

/// The default address `tpa-ca serve` listens on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8700";

/// The loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration was read from.
    pub path: PathBuf,
    /// HTTP listener.
    pub listen: SocketAddr,
    /// CA key settings.
    pub ca: CaConfig,
    /// The SQLite database file.
    pub database_path: PathBuf,
    /// Limits of `tpa-ca issue`.
    pub admin_issue: AdminIssueConfig,
    /// Roles and their approval policy.
    pub policy: Policy,
    /// Request workflow settings.
    pub workflow: WorkflowConfig,
    /// Notification sinks.
    pub webhooks: Vec<WebhookConfig>,
}

/// Where the CA key and the extra trusted keys live.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// The signing key (OpenSSH private key, mode 0600).
    pub key_file: PathBuf,
    /// File holding the key's passphrase, when the key is encrypted.
    pub passphrase_file: Option<PathBuf>,
    /// Public keys published in `/ca.pub` beside the signing key (rotation overlap).
    pub extra_trusted_public_key_files: Vec<PathBuf>,
}

/// Limits of the administrator break-glass path.
#[derive(Debug, Clone)]
pub struct AdminIssueConfig {
    /// The longest certificate `tpa-ca issue` signs.
    pub max_ttl: HumanDuration,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, wrong type, or a bad value.
    #[error("configuration file {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key's location.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    ca: RawCa,
    database: RawDatabase,
    #[serde(default)]
    admin_issue: RawAdminIssue,
    #[serde(default)]
    workflow: roles::RawWorkflow,
    #[serde(default)]
    host_groups: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    roles: Vec<roles::RawRole>,
    #[serde(default)]
    webhooks: Vec<webhooks::RawWebhook>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    key_file: PathBuf,
    passphrase_file: Option<PathBuf>,
    #[serde(default)]
    extra_trusted_public_key_files: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    path: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdminIssue {
    max_ttl: Option<String>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text that was read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| invalid(e.message().to_owned() + &location(text, e.span())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let listen = raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen.parse().map_err(|_| {
            invalid(format!(
                "server.listen {listen:?} is not an address such as 127.0.0.1:8700"
            ))
        })?;
        let max_ttl = raw.admin_issue.max_ttl.as_deref().unwrap_or("1h");
        let max_ttl = HumanDuration::parse(max_ttl)
            .map_err(|e| invalid(format!("admin_issue.max_ttl: {e}")))?;
        if raw.ca.key_file.as_os_str().is_empty() {
            return Err(invalid("ca.key_file must not be empty".to_owned()));
        }
        Ok(Self {
            path: path.to_owned(),
            listen,
            ca: CaConfig {
                key_file: resolve(&raw.ca.key_file),
                passphrase_file: raw.ca.passphrase_file.as_deref().map(resolve),
                extra_trusted_public_key_files: raw
                    .ca
                    .extra_trusted_public_key_files
                    .iter()
                    .map(|p| resolve(p))
                    .collect(),
            },
            database_path: resolve(&raw.database.path),
            admin_issue: AdminIssueConfig { max_ttl },
            policy: roles::policy(&raw.roles, &raw.host_groups).map_err(invalid)?,
            workflow: roles::workflow(&raw.workflow).map_err(invalid)?,
            webhooks: webhooks::webhooks(&raw.webhooks, base).map_err(invalid)?,
        })
    }
}

/// " (line N)" for a TOML error span, so the user can find the key.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text
                .get(..span.start)
                .unwrap_or_default()
                .matches('\n')
                .count()
                + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

/// The configuration `tpa-ca init` writes, with every key commented.
pub fn initial_config_text(listen: SocketAddr, passphrase_file: Option<&Path>) -> String {
    let passphrase = match passphrase_file {
        Some(p) => format!(
            "passphrase_file = {}\n",
            toml_string(&p.display().to_string())
        ),
        None => {
            "# passphrase_file = \"ca_key.passphrase\"   # when the key is encrypted\n".to_owned()
        }
    };
    format!(
        r#"# TPA certificate authority configuration. Every key is described in docs/configuration.md.
# Relative paths are relative to this file's directory.

[server]
# Address of the HTTP listener (API, /ca.pub, /healthz).
listen = "{listen}"

[ca]
# The user-CA signing key: OpenSSH private key, mode 0600, owned by the CA's user.
key_file = "ca_key"
{passphrase}# Extra public keys published in /ca.pub next to the signing key, e.g. the
# previous CA key while hosts move to the new one.
extra_trusted_public_key_files = []

[database]
path = "tpa.db"

[admin_issue]
# Longest certificate that `tpa-ca issue` (the break-glass path) signs.
max_ttl = "1h"
"#
    )
}

/// A TOML basic string. JSON's string escapes are a subset of TOML's.
fn toml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/tpa/tpa.toml"))
    }

    const MINIMAL: &str = "[ca]\nkey_file = \"ca_key\"\n[database]\npath = \"tpa.db\"\n";

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.ca.key_file, Path::new("/etc/tpa/ca_key"));
        assert_eq!(c.database_path, Path::new("/etc/tpa/tpa.db"));
        assert_eq!(c.admin_issue.max_ttl.as_secs(), 3600);
    }

    #[test]
    fn initial_config_parses() {
        let text = initial_config_text(
            "127.0.0.1:9000".parse().unwrap(),
            Some(Path::new("/x/pass word")),
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(
            c.ca.passphrase_file.as_deref(),
            Some(Path::new("/x/pass word"))
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let e = parse(&format!("{MINIMAL}[admin_issue]\nmax_tll = \"1h\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_tll") && e.contains("line 6"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = parse(&format!("{MINIMAL}[admin_issue]\nmax_ttl = \"forever\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin_issue.max_ttl"), "{e}");
        let e = parse(&format!("[server]\nlisten = \"localhost\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
        let e = parse("[database]\npath = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("ca"), "{e}");
    }
}
