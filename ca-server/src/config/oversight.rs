//! `[auditors]` (who may read the audit pages), `[metrics]` (who may read
//! `/metrics`) and `[[audit_sinks]]` (where every audit event is streamed).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tpa_core::{GroupName, User};

/// `[auditors]`: the groups whose members may read the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditorsConfig {
    /// Members of any of these groups are auditors (empty: nobody is).
    pub groups: BTreeSet<GroupName>,
}

impl AuditorsConfig {
    /// Whether `user` is an auditor. Being one grants reading only.
    pub fn includes(&self, user: &User) -> bool {
        self.groups.iter().any(|g| user.in_group(g))
    }
}

/// `[metrics]`: access to `GET /metrics`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The bearer token scrapers send (read from `token_file`), if any.
    pub token: Option<String>,
    /// Whether clients on a loopback address may scrape without the token.
    pub open_to_loopback: bool,
}

impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("open_to_loopback", &self.open_to_loopback)
            .finish()
    }
}

/// Where an audit sink sends events.
#[derive(Clone, PartialEq, Eq)]
pub enum AuditSinkTarget {
    /// POST batches of JSON lines, signed with HMAC-SHA256.
    Webhook {
        /// `https://…` (plain http only to loopback).
        url: reqwest::Url,
        /// The HMAC key (at least 16 bytes).
        secret: Vec<u8>,
    },
    /// RFC 5424 messages over UDP or TCP (RFC 6587 octet counting).
    Syslog {
        /// The collector.
        address: SocketAddr,
        /// TCP or UDP.
        transport: SyslogTransport,
        /// Facility code (0..=23).
        facility: u8,
    },
}

impl std::fmt::Debug for AuditSinkTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The URL may carry a token and the secret is one: show neither.
            AuditSinkTarget::Webhook { url, .. } => f
                .debug_struct("Webhook")
                .field("host", &url.host_str())
                .finish_non_exhaustive(),
            AuditSinkTarget::Syslog {
                address,
                transport,
                facility,
            } => f
                .debug_struct("Syslog")
                .field("address", address)
                .field("transport", transport)
                .field("facility", facility)
                .finish(),
        }
    }
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    /// One message per datagram; no delivery confirmation.
    Udp,
    /// Octet-counted frames on one connection (RFC 6587 section 3.4.1).
    Tcp,
}

/// One `[[audit_sinks]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditSinkConfig {
    /// Unique name; its delivery cursor is kept under this name.
    pub name: String,
    /// Where events go.
    pub target: AuditSinkTarget,
}

impl std::fmt::Debug for AuditSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSinkConfig")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuditors {
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    token_file: Option<PathBuf>,
    open_to_loopback: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuditSink {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    secret_file: Option<PathBuf>,
    address: Option<String>,
    transport: Option<String>,
    facility: Option<String>,
}

pub(super) fn auditors(raw: &RawAuditors) -> Result<AuditorsConfig, String> {
    let mut groups = BTreeSet::new();
    for g in &raw.groups {
        groups.insert(GroupName::parse(g).map_err(|e| format!("auditors.groups: {e}"))?);
    }
    Ok(AuditorsConfig { groups })
}

pub(super) fn metrics(
    raw: &RawMetrics,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<MetricsConfig, String> {
    let token = match &raw.token_file {
        Some(p) => {
            let path = resolve(p);
            let token = super::oidc::read_private_file(&path)
                .map_err(|e| format!("metrics.token_file {}: {e}", path.display()))?;
            if token.len() < 16 {
                return Err(format!(
                    "metrics.token_file {}: the token must be at least 16 characters",
                    path.display()
                ));
            }
            Some(token)
        }
        None => None,
    };
    Ok(MetricsConfig {
        token,
        open_to_loopback: raw.open_to_loopback.unwrap_or(true),
    })
}

/// Syslog facility names (RFC 5424 table 1) and their codes.
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("authpriv", 10),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

pub(super) fn audit_sinks(
    raw: &[RawAuditSink],
    resolve: &impl Fn(&Path) -> PathBuf,
    webhook_names: &[String],
) -> Result<Vec<AuditSinkConfig>, String> {
    let mut names = BTreeSet::new();
    raw.iter()
        .map(|s| {
            let ctx = |e: &str| format!("audit sink {:?}: {e}", s.name);
            if s.name.is_empty()
                || s.name.len() > 64
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(ctx("name must be 1 to 64 letters, digits, '-', '_' or '.'"));
            }
            if !names.insert(s.name.clone()) || webhook_names.contains(&s.name) {
                return Err(ctx(
                    "name is used twice (audit sinks and webhooks need distinct names)",
                ));
            }
            let target = match s.kind.as_str() {
                "webhook" => webhook_sink(s, resolve),
                "syslog" => syslog_sink(s),
                other => Err(format!("type {other:?} is not \"webhook\" or \"syslog\"")),
            }
            .map_err(|e| ctx(&e))?;
            Ok(AuditSinkConfig {
                name: s.name.clone(),
                target,
            })
        })
        .collect()
}

/// Refuses a key that does not apply to the sink's type.
fn unused(s: &RawAuditSink, key: &str, present: bool) -> Result<(), String> {
    if present {
        Err(format!("{key} does not apply to type {:?}", s.kind))
    } else {
        Ok(())
    }
}

/// `type = "webhook"`: an HTTPS URL (plain HTTP only to loopback) and the
/// HMAC secret receivers check.
fn webhook_sink(
    s: &RawAuditSink,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<AuditSinkTarget, String> {
    unused(s, "address", s.address.is_some())?;
    unused(s, "transport", s.transport.is_some())?;
    unused(s, "facility", s.facility.is_some())?;
    let url = s.url.as_deref().ok_or("url is required")?;
    let url = reqwest::Url::parse(url).map_err(|e| format!("url: {e}"))?;
    let loopback = url
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err("url must be https:// (plain http only to 127.0.0.1 or localhost)".to_owned());
    }
    let file = s
        .secret_file
        .as_deref()
        .ok_or("secret_file is required: receivers must be able to check the HMAC")?;
    let path = resolve(file);
    let secret = super::oidc::read_private_file(&path)
        .map_err(|e| format!("secret_file {}: {e}", path.display()))?
        .into_bytes();
    if secret.len() < 16 {
        return Err("secret_file must hold at least 16 bytes".to_owned());
    }
    Ok(AuditSinkTarget::Webhook { url, secret })
}

/// `type = "syslog"`: an address, TCP or UDP, a facility.
fn syslog_sink(s: &RawAuditSink) -> Result<AuditSinkTarget, String> {
    unused(s, "url", s.url.is_some())?;
    unused(s, "secret_file", s.secret_file.is_some())?;
    let address = s
        .address
        .as_deref()
        .ok_or("address is required, e.g. \"127.0.0.1:514\"")?;
    let address = address.parse().map_err(|_| {
        format!("address {address:?} is not an IP address and port such as 127.0.0.1:514")
    })?;
    let transport = match s.transport.as_deref().unwrap_or("tcp") {
        "tcp" => SyslogTransport::Tcp,
        "udp" => SyslogTransport::Udp,
        other => return Err(format!("transport {other:?} is not \"tcp\" or \"udp\"")),
    };
    let facility = s.facility.as_deref().unwrap_or("authpriv");
    let facility = FACILITIES
        .iter()
        .find(|(n, _)| *n == facility)
        .map(|(_, code)| *code)
        .ok_or_else(|| {
            let known: Vec<&str> = FACILITIES.iter().map(|(n, _)| *n).collect();
            format!(
                "facility {facility:?} is unknown; known: {}",
                known.join(", ")
            )
        })?;
    Ok(AuditSinkTarget::Syslog {
        address,
        transport,
        facility,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    use super::*;

    const MINIMAL: &str = "[ca]\nkey_file = \"ca_key\"\n[database]\npath = \"tpa.db\"\n";

    fn parse_in(dir: &Path, more: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{MINIMAL}{more}"), &dir.join("tpa.toml"))
    }

    fn secret(dir: &Path, name: &str, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn defaults_are_no_auditors_no_sinks_and_loopback_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse_in(dir.path(), "").unwrap();
        assert!(c.auditors.groups.is_empty());
        assert!(c.audit_sinks.is_empty());
        assert_eq!(
            c.metrics,
            MetricsConfig {
                token: None,
                open_to_loopback: true
            }
        );
    }

    #[test]
    fn sinks_auditors_and_metrics_parse() {
        let dir = tempfile::tempdir().unwrap();
        secret(dir.path(), "siem.secret", "0123456789abcdef0123\n", 0o600);
        secret(
            dir.path(),
            "metrics.token",
            "metrics-token-0123456789\n",
            0o600,
        );
        let c = parse_in(
            dir.path(),
            r#"
[auditors]
groups = ["auditors", "security"]
[metrics]
token_file = "metrics.token"
open_to_loopback = false
[[audit_sinks]]
name = "siem"
type = "webhook"
url = "https://siem.example.com/tpa"
secret_file = "siem.secret"
[[audit_sinks]]
name = "syslog"
type = "syslog"
address = "127.0.0.1:514"
transport = "udp"
facility = "local3"
"#,
        )
        .unwrap();
        assert_eq!(c.auditors.groups.len(), 2);
        assert_eq!(c.metrics.token.as_deref(), Some("metrics-token-0123456789"));
        assert!(!c.metrics.open_to_loopback);
        assert!(!format!("{:?}", c.metrics).contains("metrics-token"));
        assert_eq!(c.audit_sinks.len(), 2);
        assert!(matches!(
            &c.audit_sinks[0].target,
            AuditSinkTarget::Webhook { secret, .. } if secret == b"0123456789abcdef0123"
        ));
        assert!(!format!("{:?}", c.audit_sinks).contains("0123456789abcdef"));
        assert_eq!(
            c.audit_sinks[1].target,
            AuditSinkTarget::Syslog {
                address: "127.0.0.1:514".parse().unwrap(),
                transport: SyslogTransport::Udp,
                facility: 19
            }
        );
    }

    #[test]
    fn bad_entries_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        secret(dir.path(), "ok.secret", "0123456789abcdef0123", 0o600);
        secret(dir.path(), "short.secret", "short", 0o600);
        secret(dir.path(), "open.secret", "0123456789abcdef0123", 0o644);
        let check = |more: &str, expected: &[&str]| {
            let e = parse_in(dir.path(), more).unwrap_err().to_string();
            for part in expected {
                assert!(e.contains(part), "{more}: {e:?} lacks {part:?}");
            }
        };
        let webhook =
            |extra: &str| format!("[[audit_sinks]]\nname = \"s\"\ntype = \"webhook\"\n{extra}");
        check(
            &webhook("secret_file = \"ok.secret\"\n"),
            &["\"s\"", "url is required"],
        );
        check(
            &webhook("url = \"http://siem.example.com/\"\nsecret_file = \"ok.secret\"\n"),
            &["https://"],
        );
        check(
            &webhook("url = \"https://x.example/\"\n"),
            &["secret_file is required"],
        );
        check(
            &webhook("url = \"https://x.example/\"\nsecret_file = \"short.secret\"\n"),
            &["at least 16 bytes"],
        );
        check(
            &webhook("url = \"https://x.example/\"\nsecret_file = \"open.secret\"\n"),
            &["chmod 600"],
        );
        check(
            &webhook(
                "url = \"https://x.example/\"\nsecret_file = \"ok.secret\"\naddress = \"1.2.3.4:5\"\n",
            ),
            &["address does not apply"],
        );
        let syslog =
            |extra: &str| format!("[[audit_sinks]]\nname = \"s\"\ntype = \"syslog\"\n{extra}");
        check(&syslog(""), &["address is required"]);
        check(
            &syslog("address = \"logs:514\"\n"),
            &["is not an IP address"],
        );
        check(
            &syslog("address = \"127.0.0.1:514\"\ntransport = \"tls\"\n"),
            &["\"tls\""],
        );
        check(
            &syslog("address = \"127.0.0.1:514\"\nfacility = \"mail\"\n"),
            &["\"mail\"", "authpriv"],
        );
        check(
            "[[audit_sinks]]\nname = \"s\"\ntype = \"kafka\"\n",
            &["\"kafka\"", "webhook", "syslog"],
        );
        check(
            &format!(
                "{}\n{}",
                syslog("address = \"127.0.0.1:1\"\n"),
                syslog("address = \"127.0.0.1:2\"\n")
            ),
            &["used twice"],
        );
        check(
            "[[audit_sinks]]\nname = \"a b\"\ntype = \"syslog\"\naddress = \"127.0.0.1:1\"\n",
            &["name must be"],
        );
        check(
            "[auditors]\ngroups = [\"Auditors\"]\n",
            &["auditors.groups"],
        );
        check("[auditors]\ngroup = [\"auditors\"]\n", &["group"]);
        check(
            "[metrics]\ntoken_file = \"short.secret\"\n",
            &["metrics.token_file", "16"],
        );
        check(
            "[metrics]\ntoken_file = \"missing\"\n",
            &["metrics.token_file"],
        );
    }
}
