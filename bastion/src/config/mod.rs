//! `bastion.toml`: where the bastion listens, its host key, whom it trusts,
//! its limits and its inventory of hosts.

mod inventory;
mod limits;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tpa_core::HumanDuration;

pub use inventory::{HostAddress, Inventory};
pub use limits::Limits;
use limits::RawLimits;

/// The bastion's configuration, checked.
#[derive(Debug, Clone)]
pub struct BastionConfig {
    /// The SSH listening address.
    pub listen: SocketAddr,
    /// The persisted Ed25519 host key (created on first start when missing).
    pub host_key_file: PathBuf,
    /// Where the trusted user-CA keys come from.
    pub trust: TrustSource,
    /// Connection and authentication limits.
    pub limits: Limits,
    /// The hosts the bastion may forward to, by the name certificates use.
    pub inventory: Inventory,
    /// The CA's base URL, when set (`ca_url`).
    pub ca_url: Option<String>,
    /// The file holding this bastion's CA token (`ca_token_file`); without it
    /// there is no revocation feed and session records stay in the spool.
    pub ca_token_file: Option<PathBuf>,
    /// Session records wait here (JSON lines) until the CA has them.
    pub session_spool: PathBuf,
    /// Refusal reports wait here (JSON lines) until the CA has them.
    pub refusal_spool: PathBuf,
    /// How often the revocation feed is polled.
    pub revocation_poll: Duration,
    /// Where the last known revocation state is kept across restarts.
    pub revocation_state_file: PathBuf,
    /// How often the trusted user-CA keys are reloaded.
    pub trust_refresh: Duration,
}

/// The default `revocation_poll`.
pub const DEFAULT_REVOCATION_POLL: Duration = Duration::from_secs(2);
/// The longest `revocation_poll` allowed: revocations must bite within 5 s.
pub const MAX_REVOCATION_POLL: Duration = Duration::from_secs(4);
/// The default `trust_refresh`.
pub const DEFAULT_TRUST_REFRESH: Duration = Duration::from_secs(60);

/// Where the trusted user-CA public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustSource {
    /// `GET <ca_url>/ca.pub` at start and every `trust_refresh`.
    CaUrl(String),
    /// A local file in `authorized_keys` format (`TrustedUserCAKeys` style).
    File(PathBuf),
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
        /// What is wrong, naming the key.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    host_key_file: PathBuf,
    ca_url: Option<String>,
    trusted_user_ca_keys: Option<PathBuf>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    hosts: BTreeMap<String, String>,
    ca_token_file: Option<PathBuf>,
    #[serde(default)]
    insecure_without_ca_feed: bool,
    session_spool: Option<PathBuf>,
    refusal_spool: Option<PathBuf>,
    revocation_poll: Option<String>,
    revocation_state_file: Option<PathBuf>,
    trust_refresh: Option<String>,
}

impl BastionConfig {
    /// Reads and checks `path`; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; relative paths are resolved against `base`.
    ///
    /// Plain `http://` to the CA is accepted only on loopback: over a network it
    /// would let anyone on the path inject a CA key, hide revocations and read
    /// the bastion's token.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(url) = &raw.ca_url {
            check_ca_url(url)?;
        }
        let trust = trust_source(
            raw.ca_url.as_deref(),
            raw.trusted_user_ca_keys.as_deref(),
            base,
        )?;
        let limits = limits::limits(raw.limits)?;
        let inventory = inventory::inventory(raw.hosts)?;
        check_ca_feed(
            &raw.ca_url,
            &raw.ca_token_file,
            raw.insecure_without_ca_feed,
        )?;
        let revocation_poll = duration(
            "revocation_poll",
            raw.revocation_poll,
            DEFAULT_REVOCATION_POLL,
        )?;
        if revocation_poll.is_zero() || revocation_poll > MAX_REVOCATION_POLL {
            return Err(format!(
                "revocation_poll must be between 1s and {}s, so that a revocation ends sessions within 5 s",
                MAX_REVOCATION_POLL.as_secs()
            ));
        }
        let trust_refresh = duration("trust_refresh", raw.trust_refresh, DEFAULT_TRUST_REFRESH)?;
        if trust_refresh < Duration::from_secs(10) {
            return Err("trust_refresh must be at least 10s".to_owned());
        }
        let in_base = |file: Option<PathBuf>, default: &str| {
            base.join(file.unwrap_or_else(|| PathBuf::from(default)))
        };
        Ok(Self {
            listen: raw.listen,
            host_key_file: base.join(raw.host_key_file),
            trust,
            limits,
            inventory,
            ca_url: raw.ca_url,
            ca_token_file: raw.ca_token_file.map(|f| base.join(f)),
            session_spool: in_base(raw.session_spool, "sessions.spool"),
            refusal_spool: in_base(raw.refusal_spool, "refusals.spool"),
            revocation_poll,
            revocation_state_file: in_base(raw.revocation_state_file, "revocations.json"),
            trust_refresh,
        })
    }
}

/// Where the trusted user CA keys come from. A key file wins over `ca_url`
/// for the keys; `ca_url` still serves the revocation feed and session records.
fn trust_source(
    ca_url: Option<&str>,
    key_file: Option<&Path>,
    base: &Path,
) -> Result<TrustSource, String> {
    match (ca_url, key_file) {
        (_, Some(file)) => Ok(TrustSource::File(base.join(file))),
        (Some(url), None) => Ok(TrustSource::CaUrl(url.to_owned())),
        (None, None) => Err(
            "no trusted user CA: set ca_url (the CA's base URL) or trusted_user_ca_keys (a file)"
                .to_owned(),
        ),
    }
}

/// `value` (or `default`) as a duration; errors name `key`.
pub(super) fn duration(
    key: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(v) => HumanDuration::parse(&v)
            .map(HumanDuration::get)
            .map_err(|e| format!("{key}: {e}")),
    }
}

/// The CA's feed (revocations, active requests) needs `ca_url` and
/// `ca_token_file`; going without it must be asked for, since the bastion
/// would then know no revocation and could not check that a request is
/// still active.
fn check_ca_feed(
    ca_url: &Option<String>,
    ca_token_file: &Option<PathBuf>,
    insecure_without_ca_feed: bool,
) -> Result<(), String> {
    if ca_token_file.is_some() && ca_url.is_none() {
        return Err(
            "ca_token_file is set but ca_url is not: the token is for the CA at ca_url".to_owned(),
        );
    }
    if ca_token_file.is_none() && !insecure_without_ca_feed {
        return Err(
            "no ca_token_file: without it the bastion gets no revocation feed (revoked \
             certificates and ended requests would still be let in) and delivers no session \
             records; set ca_url and ca_token_file, or insecure_without_ca_feed = true for a \
             lab or a benchmark"
                .to_owned(),
        );
    }
    if ca_token_file.is_some() && insecure_without_ca_feed {
        return Err(
            "insecure_without_ca_feed = true contradicts ca_token_file: remove one".to_owned(),
        );
    }
    Ok(())
}

/// Refuses a CA URL that is not `https://`, or plain `http://` to a loopback
/// address. The URL is judged as the HTTP client will parse it (scheme in any
/// case, surrounding spaces, `http:host` without slashes), not by its text.
fn check_ca_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| format!("ca_url {url:?} is not an http:// or https:// URL"))?;
    if parsed.cannot_be_a_base()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.host().is_none()
    {
        return Err(format!(
            "ca_url {url:?} must be https://host[:port] (no user name or password)"
        ));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "ca_url {url:?}: plain http:// is allowed only to a loopback address; use https://"
                ))
            }
        }
        _ => Err(format!("ca_url {url:?} is not an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tpa_core::HostName;

    fn parse(text: &str) -> Result<BastionConfig, String> {
        BastionConfig::parse(text, Path::new("/etc/tpa"))
    }

    const MINIMAL: &str = r#"
listen = "127.0.0.1:2200"
host_key_file = "host_ed25519"
trusted_user_ca_keys = "ca.pub"
insecure_without_ca_feed = true
"#;

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:2200");
        assert_eq!(c.host_key_file, Path::new("/etc/tpa/host_ed25519"));
        assert_eq!(c.trust, TrustSource::File("/etc/tpa/ca.pub".into()));
        assert_eq!(c.limits, Limits::default());
        assert!(c.inventory.is_empty());
        assert_eq!(c.session_spool, Path::new("/etc/tpa/sessions.spool"));
        assert_eq!(c.refusal_spool, Path::new("/etc/tpa/refusals.spool"));
        assert_eq!(c.revocation_poll, DEFAULT_REVOCATION_POLL);
        assert_eq!(c.ca_token_file, None);
        assert_eq!(
            c.revocation_state_file,
            Path::new("/etc/tpa/revocations.json")
        );
        assert_eq!(c.trust_refresh, DEFAULT_TRUST_REFRESH);
    }

    #[test]
    fn full_config() {
        let c = parse(
            r#"
listen = "0.0.0.0:22"
host_key_file = "/var/lib/tpa-bastion/host_ed25519"
ca_url = "http://127.0.0.1:8700"
ca_token_file = "bastion.token"
session_spool = "/var/spool/tpa-bastion/sessions.jsonl"
revocation_poll = "1s"
revocation_state_file = "state/revocations.json"
trust_refresh = "5m"
[limits]
max_connections = 10
max_unauthenticated = 20
max_unauthenticated_per_address = 4
handshake_timeout = "2s"
auth_timeout = "5s"
max_auth_attempts = 3
inactivity_timeout = "1h"
max_forwards_per_connection = 4
[hosts]
web-1 = "10.0.0.5:22"
db-1 = "db1.internal:2222"
v6 = "[::1]:22"
"#,
        )
        .unwrap();
        assert_eq!(c.trust, TrustSource::CaUrl("http://127.0.0.1:8700".into()));
        assert_eq!(c.ca_token_file, Some("/etc/tpa/bastion.token".into()));
        assert_eq!(
            c.session_spool,
            Path::new("/var/spool/tpa-bastion/sessions.jsonl")
        );
        assert_eq!(c.revocation_poll, Duration::from_secs(1));
        assert_eq!(
            c.revocation_state_file,
            Path::new("/etc/tpa/state/revocations.json")
        );
        assert_eq!(c.trust_refresh, Duration::from_secs(300));
        assert_eq!(c.limits.max_connections, 10);
        assert_eq!(c.limits.max_unauthenticated, 20);
        assert_eq!(c.limits.max_unauthenticated_per_address, 4);
        assert_eq!(c.limits.handshake_timeout, Duration::from_secs(2));
        assert_eq!(c.limits.auth_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.max_auth_attempts, 3);
        assert_eq!(c.limits.inactivity_timeout, Duration::from_secs(3600));
        assert_eq!(c.limits.max_forwards_per_connection, 4);
        let web = HostName::parse("web-1").unwrap();
        assert_eq!(c.inventory.get(&web).unwrap().to_string(), "10.0.0.5:22");
        let db = HostName::parse("db-1").unwrap();
        assert_eq!(
            c.inventory.get(&db).unwrap().to_string(),
            "db1.internal:2222"
        );
        let v6 = HostName::parse("v6").unwrap();
        assert_eq!(c.inventory.get(&v6).unwrap().to_string(), "[::1]:22");
    }

    #[test]
    fn without_the_ca_feed_is_refused_unless_asked_for() {
        // Security review 2026-11-24: a bastion with no revocation feed let
        // revoked certificates in after only a warning in its log.
        let bare = MINIMAL.replace("insecure_without_ca_feed = true\n", "");
        let err = parse(&bare).unwrap_err();
        assert!(err.contains("no ca_token_file"), "{err}");
        assert!(err.contains("insecure_without_ca_feed"), "{err}");
        let with_feed =
            format!("{bare}ca_url = \"https://ca.example.com\"\nca_token_file = \"t\"\n");
        assert!(parse(&with_feed).is_ok());
        let both = format!("{with_feed}insecure_without_ca_feed = true\n");
        assert!(parse(&both).unwrap_err().contains("contradicts"));
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let check = |extra: &str, needle: &str| {
            let err = parse(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert!(err.contains(needle), "{extra:?}: {err}");
        };
        check("colour = \"blue\"\n", "unknown field");
        check("ca_token_file = \"t\"\n", "ca_url is not");
        // Security review M4: no plain HTTP to the CA over a network.
        check(
            "ca_url = \"http://ca.example.com:8700\"\n",
            "only to a loopback address",
        );
        check(
            "ca_url = \"http://10.0.0.1\"\n",
            "only to a loopback address",
        );
        assert!(super::check_ca_url("http://127.0.0.1:8700").is_ok());
        assert!(super::check_ca_url("http://[::1]:8700/x").is_ok());
        assert!(super::check_ca_url("http://localhost:8700").is_ok());
        assert!(super::check_ca_url("https://ca.example.com").is_ok());
        // Security review (rev-bastion): spellings that the HTTP client reads
        // as plain http:// to a network host were let through by a text check.
        for sneaky in [
            "HTTP://10.0.0.1",
            " http://10.0.0.1",
            "http:10.0.0.1",
            "http:\\\\10.0.0.1",
            "Http://ca.example.com",
            "http://localhost:8700@ca.example.com",
            "http://127.0.0.1:1@10.0.0.1/",
        ] {
            assert!(super::check_ca_url(sneaky).is_err(), "{sneaky:?}");
        }
        for bad in ["ftp://ca", "https://user@ca.example.com", "not a url"] {
            assert!(super::check_ca_url(bad).is_err(), "{bad:?}");
        }
        check("revocation_poll = \"10s\"\n", "revocation_poll");
        check("trust_refresh = \"1s\"\n", "trust_refresh");
        check("[limits]\nauth_timeout = \"soon\"\n", "limits.auth_timeout");
        check("[limits]\nmax_connections = 0\n", "max_connections");
        check("[limits]\nmax_auth_attempts = 0\n", "max_auth_attempts");
        check("[limits]\nmax_unauthenticated = 0\n", "max_unauthenticated");
        check(
            "[limits]\nmax_unauthenticated_per_address = 0\n",
            "max_unauthenticated_per_address",
        );
        check(
            "[limits]\nhandshake_timeout = \"1m\"\n",
            "handshake_timeout must not exceed",
        );
        check(
            "[limits]\nhandshake_timeout = \"soon\"\n",
            "limits.handshake_timeout",
        );
        check(
            "[limits]\nmax_forwards_per_connection = 0\n",
            "max_forwards_per_connection",
        );
        check("[limits]\nretries = 1\n", "unknown field");
        check("[hosts]\n\"Web_1\" = \"10.0.0.5:22\"\n", "hosts");
        check("[hosts]\nweb-1 = \"10.0.0.5\"\n", "hosts.web-1");
        check("[hosts]\nweb-1 = \"a b:22\"\n", "hosts.web-1");
        let err = parse("listen = \"127.0.0.1:22\"\nhost_key_file = \"k\"\n").unwrap_err();
        assert!(err.contains("no trusted user CA"), "{err}");
    }
}
