//! `tpa.toml`: the CA's configuration, parsed strictly (unknown keys are errors).
//!
//! Relative paths are resolved against the directory of the configuration file,
//! so a data directory can be moved as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tpa_core::{HumanDuration, Policy};

mod accounts;
mod alerts;
mod audit_checkpoints;
mod bastions;
mod client;
mod database;
mod initial;
mod integration_rules;
mod integrations;
mod ldap;
mod limits;
mod oidc;
mod oversight;
mod policy_hook;
mod roles;
mod webhooks;

pub use accounts::{AccountConfig, AuthConfig, check_password_hash};
use accounts::{RawAccount, RawAuth, accounts, auth_config};
pub use alerts::{
    AlertDestination, AlertKind, AlertRule, BurstKey, DestinationKind, Hours, Severity, day_number,
};
pub use audit_checkpoints::AuditConfig;
pub use bastions::BastionEntry;
pub use client::ClientAnnouncement;
pub use database::{DatabaseConfig, PostgresConfig, check_url as check_postgres_url};
pub use initial::{SQLITE_DATABASE, initial_config_text, toml_string};
pub use integrations::{
    IntegrationsConfig, OnCallKind, OnCallProviderConfig, RequesterOnTicket, RoleOnCall,
    RoleTicketCheck, Secret, TicketKind, TicketSystemConfig, WhenDown,
};
pub use ldap::{GroupMembership, LdapConfig, LdapKind, LdapTransport};
pub use limits::{DEFAULT_WRITE_DEADLINE, HealthConfig, ServerLimits};
pub use oidc::{OidcConfig, read_private_file};
pub use oversight::{
    AuditSinkConfig, AuditSinkTarget, AuditorsConfig, MetricsConfig, SyslogTransport,
};
pub use policy_hook::{DEFAULT_HOOK_TIMEOUT, HOOK_USERNAME, HookStage, PolicyHookConfig};
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
    /// The store (`[database]`): a SQLite file or a PostgreSQL database.
    pub database: DatabaseConfig,
    /// The SQLite database file; empty when the store is PostgreSQL, which
    /// the commands that run on SQLite only refuse clearly (`store::open`).
    pub database_path: PathBuf,
    /// The longest one write may take from its request's arrival (`database.write_deadline`).
    pub write_deadline: std::time::Duration,
    /// Timeouts and connection caps of the HTTP server (`[server]`).
    pub server_limits: ServerLimits,
    /// What `/healthz` counts as unhealthy (`[health]`).
    pub health: HealthConfig,
    /// Limits of `tpa-ca issue`.
    pub admin_issue: AdminIssueConfig,
    /// Roles and their approval policy.
    pub policy: Policy,
    /// Request workflow settings.
    pub workflow: WorkflowConfig,
    /// Notification sinks.
    pub webhooks: Vec<WebhookConfig>,
    /// The URL users reach the CA at, when set (`server.public_url`).
    pub public_url: Option<PublicUrl>,
    /// Built-in local accounts (`[[accounts]]`).
    pub accounts: Vec<AccountConfig>,
    /// Session and API token lifetimes (`[auth]`).
    pub auth: AuthConfig,
    /// OpenID Connect connectors (`[[oidc]]`).
    pub oidc: Vec<OidcConfig>,
    /// LDAP / Active Directory connectors (`[[ldap]]`).
    pub ldap: Vec<LdapConfig>,
    /// Bastions allowed to read the revocation feed and deliver session records.
    pub bastions: Vec<BastionEntry>,
    /// Who may read the audit pages (`[auditors]`).
    pub auditors: AuditorsConfig,
    /// Access to `/metrics` (`[metrics]`).
    pub metrics: MetricsConfig,
    /// Where every audit event is streamed (`[[audit_sinks]]`).
    pub audit_sinks: Vec<AuditSinkConfig>,
    /// What `GET /api/v1/client-config` announces to `tpa-ssh` (`[client]`).
    pub client: ClientAnnouncement,
    /// Signed audit checkpoints (`[audit]`), when an audit key is configured.
    pub audit: Option<AuditConfig>,
    /// On-call providers, ticket systems and the roles' rules for them.
    pub integrations: IntegrationsConfig,
    /// `[policy_hook]`: the external policy hook, if configured.
    pub policy_hook: Option<PolicyHookConfig>,
    /// `[[alerts]]`: rules over the audit stream.
    pub alerts: Vec<AlertRule>,
    /// `[[alert_destinations]]`: where alerts go.
    pub alert_destinations: Vec<AlertDestination>,
}

/// `server.public_url`: where users reach the CA. Its scheme decides whether
/// session cookies are `Secure` with the `__Host-` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http` or `https`, lowercase.
    scheme: String,
    /// Host and optional port, lowercase.
    authority: String,
}

impl PublicUrl {
    /// Parses an absolute `http://` or `https://` URL with a host and nothing
    /// after the path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = if let Some(rest) = lower.strip_prefix("https://") {
            ("https", rest)
        } else if let Some(rest) = lower.strip_prefix("http://") {
            ("http", rest)
        } else {
            return Err("must start with https:// or http://".to_owned());
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let bad_char =
            |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if authority.is_empty() || authority.starts_with(':') || authority.contains(bad_char) {
            return Err("must name a host, e.g. https://ca.example.com".to_owned());
        }
        if rest.contains(['?', '#']) || rest.contains(char::is_whitespace) {
            return Err("must not have a query, a fragment or whitespace".to_owned());
        }
        Ok(Self {
            scheme: scheme.to_owned(),
            authority: authority.to_owned(),
        })
    }

    /// Whether users reach the CA over TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }

    /// The origin (`scheme://host[:port]`), as browsers send it in `Origin`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
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
    server: limits::RawServer,
    ca: RawCa,
    database: database::RawDatabase,
    #[serde(default)]
    admin_issue: RawAdminIssue,
    #[serde(default)]
    workflow: roles::RawWorkflow,
    #[serde(default)]
    host_groups: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    roles: Vec<roles::RawRole>,
    #[serde(default)]
    identity_links: Vec<roles::RawIdentityLink>,
    #[serde(default)]
    webhooks: Vec<webhooks::RawWebhook>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    oidc: Vec<oidc::RawOidc>,
    #[serde(default)]
    ldap: Vec<ldap::RawLdap>,
    #[serde(default)]
    bastions: Vec<bastions::RawBastion>,
    #[serde(default)]
    auditors: oversight::RawAuditors,
    #[serde(default)]
    metrics: oversight::RawMetrics,
    #[serde(default)]
    audit_sinks: Vec<oversight::RawAuditSink>,
    #[serde(default)]
    client: client::RawClient,
    #[serde(default)]
    audit: audit_checkpoints::RawAudit,
    #[serde(default)]
    health: limits::RawHealth,
    #[serde(default)]
    on_call: Vec<integrations::RawProvider>,
    #[serde(default)]
    ticket_systems: Vec<integrations::RawProvider>,
    #[serde(default)]
    policy_hook: Option<policy_hook::RawPolicyHook>,
    #[serde(default)]
    alerts: Vec<alerts::RawAlert>,
    #[serde(default)]
    alert_destinations: Vec<alerts::RawDestination>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    key_file: PathBuf,
    passphrase_file: Option<PathBuf>,
    #[serde(default)]
    extra_trusted_public_key_files: Vec<PathBuf>,
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
        Self::from_raw(&raw, path).map_err(invalid)
    }

    /// Checks every section of the parsed file, in the order of the docs
    /// (the first error is the one reported); relative paths are resolved
    /// against the file's folder.
    fn from_raw(raw: &RawConfig, path: &Path) -> Result<Self, String> {
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let database = database::database(&raw.database, resolve)?;
        let listen = listen(&raw.server)?;
        let max_ttl = raw.admin_issue.max_ttl.as_deref().unwrap_or("1h");
        let max_ttl =
            HumanDuration::parse(max_ttl).map_err(|e| format!("admin_issue.max_ttl: {e}"))?;
        if raw.ca.key_file.as_os_str().is_empty() {
            return Err("ca.key_file must not be empty".to_owned());
        }
        let public_url = raw
            .server
            .public_url
            .as_deref()
            .map(PublicUrl::parse)
            .transpose()
            .map_err(|e| format!("server.public_url {e}"))?;
        let auth = auth_config(&raw.auth)?;
        let accounts = accounts(&raw.accounts, &resolve)?;
        let oidc = oidc::connectors(&raw.oidc, &resolve)?;
        if !oidc.is_empty() && public_url.is_none() {
            return Err("[[oidc]] needs server.public_url: the providers send users back to PUBLIC_URL/oidc/callback".to_owned());
        }
        let ldap = ldap::connectors(&raw.ldap, &resolve)?;
        let webhooks = webhooks::webhooks(&raw.webhooks, base)?;
        let mut integrations = IntegrationsConfig {
            on_call: integrations::on_call_providers(&raw.on_call, base)?,
            ticket_systems: integrations::ticket_systems(&raw.ticket_systems, base)?,
            ..IntegrationsConfig::default()
        };
        let policy = roles::policy(&raw.roles, &raw.host_groups, &mut integrations)
            .and_then(|p| roles::with_links(p, &raw.identity_links))?;
        let webhook_names: Vec<String> = webhooks.iter().map(|w| w.name.clone()).collect();
        let audit_sinks = oversight::audit_sinks(&raw.audit_sinks, &resolve, &webhook_names)?;
        let role_names = policy.roles().map(|r| r.name.clone()).collect();
        let policy_hook = policy_hook::policy_hook(raw.policy_hook.as_ref(), base, &role_names)?;
        policy_hook::check_owned_group(policy_hook.as_ref(), &accounts, &oidc, &ldap)?;
        let alert_destinations = alerts::destinations(&raw.alert_destinations, base)?;
        let alerts = alerts::rules(&raw.alerts, &alert_destinations, &role_names)?;
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
            database_path: database.sqlite_path(),
            database,
            write_deadline: limits::duration(
                "database.write_deadline",
                raw.database.write_deadline.as_deref(),
                DEFAULT_WRITE_DEADLINE,
            )?,
            server_limits: limits::server_limits(&raw.server)?,
            health: limits::health(&raw.health)?,
            admin_issue: AdminIssueConfig { max_ttl },
            policy,
            workflow: roles::workflow(&raw.workflow)?,
            webhooks,
            public_url,
            accounts,
            auth,
            oidc,
            ldap,
            bastions: bastions::bastions(&raw.bastions)?,
            auditors: oversight::auditors(&raw.auditors)?,
            metrics: oversight::metrics(&raw.metrics, &resolve)?,
            audit_sinks,
            client: client::client(&raw.client)?,
            audit: audit_checkpoints::audit(&raw.audit, &resolve)?,
            integrations,
            policy_hook,
            alerts,
            alert_destinations,
        })
    }

    /// Whether `user` is an administrator (a member of one of `auth.admin_groups`).
    pub fn is_admin(&self, user: &tpa_core::User) -> bool {
        self.auth.admin_groups.iter().any(|g| user.in_group(g))
    }

    /// Whether users reach the CA over TLS (from `server.public_url`; plain HTTP when unset).
    pub fn serves_tls(&self) -> bool {
        self.public_url.as_ref().is_some_and(PublicUrl::is_tls)
    }
}

/// `server.listen`: the address the CA binds.
fn listen(raw: &limits::RawServer) -> Result<SocketAddr, String> {
    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    listen
        .parse()
        .map_err(|_| format!("server.listen {listen:?} is not an address such as 127.0.0.1:8700"))
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
            SQLITE_DATABASE,
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

    fn with_account(body: &str) -> Result<Config, ConfigError> {
        parse(&format!(
            "{MINIMAL}[[accounts]]\nusername = \"alice\"\n{body}"
        ))
    }

    fn hash_line() -> String {
        let hash = crate::auth::identity::hash_password("pw").unwrap();
        format!("password_hash = \"{hash}\"\n")
    }

    fn error_of(r: Result<Config, ConfigError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn accounts_and_auth_defaults() {
        let c = with_account(&format!(
            "{}display_name = \"Alice A.\"\ngroups = [\"engineers\", \"sre\"]\n",
            hash_line()
        ))
        .unwrap();
        assert_eq!(c.accounts.len(), 1);
        let a = &c.accounts[0];
        assert_eq!(
            (a.username.as_str(), a.display_name.as_str()),
            ("alice", "Alice A.")
        );
        assert_eq!(a.groups.len(), 2);
        assert!(!format!("{a:?}").contains("argon2"), "Debug hides the hash");
        assert_eq!(c.auth.session_ttl.as_secs(), 8 * 3600);
        assert_eq!(c.auth.api_token_ttl.as_secs(), 12 * 3600);
        // issue 18: device-login tokens are shorter-lived by default.
        assert_eq!(c.auth.device_token_ttl.as_secs(), 3600);
        assert!(!c.serves_tls());
        let c = parse(&format!(
            "{MINIMAL}[auth]\nsession_ttl = \"30m\"\napi_token_ttl = \"1h\"\ndevice_token_ttl = \"15m\"\n"
        ))
        .unwrap();
        assert_eq!(
            (
                c.auth.session_ttl.as_secs(),
                c.auth.api_token_ttl.as_secs(),
                c.auth.device_token_ttl.as_secs()
            ),
            (1800, 3600, 900)
        );
        assert!(c.accounts.is_empty());
    }

    #[test]
    fn password_hash_file_is_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let hash = crate::auth::identity::hash_password("pw").unwrap();
        std::fs::write(dir.path().join("alice.hash"), format!("{hash}\n")).unwrap();
        let text = format!(
            "{MINIMAL}[[accounts]]\nusername = \"alice\"\npassword_hash_file = \"alice.hash\"\n"
        );
        let c = Config::parse(&text, &dir.path().join("tpa.toml")).unwrap();
        assert_eq!(c.accounts[0].password_hash, hash);
        let e = error_of(Config::parse(
            &text.replace("alice.hash", "missing.hash"),
            &dir.path().join("tpa.toml"),
        ));
        assert!(
            e.contains("\"alice\"") && e.contains("password_hash_file"),
            "{e}"
        );
    }

    #[test]
    fn bad_accounts_are_refused_naming_the_account() {
        let argon2i = {
            use argon2::password_hash::PasswordHasher as _;
            let params = argon2::Params::new(19_456, 2, 1, None).unwrap();
            argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params)
                .hash_password(b"pw")
                .unwrap()
                .to_string()
        };
        let check = |body: String, expected: &[&str]| {
            let e = error_of(with_account(&body));
            for part in expected {
                assert!(e.contains(part), "{e:?} lacks {part:?}");
            }
        };
        check(
            "password_hash = \"hunter2\"\n".into(),
            &["\"alice\"", "PHC", "hash-password"],
        );
        check(
            "password_hash = \"$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW\"\n"
                .into(),
            &["\"alice\""],
        );
        check(
            format!("password_hash = \"{argon2i}\"\n"),
            &["\"alice\"", "\"argon2i\"", "only argon2id"],
        );
        check(
            "password_hash = \"$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo\"\n".into(),
            &["\"alice\"", "parameters"],
        );
        check(
            format!("{}password_hash_file = \"x\"\n", hash_line()),
            &["\"alice\"", "not both"],
        );
        check(String::new(), &["\"alice\"", "required"]);
        check(
            format!("{}groups = [\"Engineers\"]\n", hash_line()),
            &["\"alice\"", "groups", "Engineers"],
        );
        check(
            format!("{}display_name = \"a\\nb\"\n", hash_line()),
            &["\"alice\"", "display_name"],
        );
        check(format!("{}pasword = \"x\"\n", hash_line()), &["pasword"]);
        let e = error_of(parse(&format!(
            "{MINIMAL}[[accounts]]\nusername = \"x y\"\n{}",
            hash_line()
        )));
        assert!(e.contains("accounts[0].username"), "{e}");
        let e = error_of(parse(&format!(
            "{MINIMAL}[[accounts]]\nusername = \"bob\"\n{h}[[accounts]]\nusername = \"bob\"\n{h}",
            h = hash_line()
        )));
        assert!(e.contains("\"bob\"") && e.contains("twice"), "{e}");
        let e = error_of(parse(&format!("{MINIMAL}[auth]\nsession_ttl = \"0s\"\n")));
        assert!(e.contains("auth.session_ttl"), "{e}");
    }

    #[test]
    fn public_url_decides_tls() {
        let url = |u: &str| parse(&format!("[server]\npublic_url = \"{u}\"\n{MINIMAL}"));
        let c = url("https://CA.example.com/").unwrap();
        assert!(c.serves_tls());
        assert_eq!(c.public_url.unwrap().origin(), "https://ca.example.com");
        let c = url("http://127.0.0.1:8700").unwrap();
        assert!(!c.serves_tls());
        assert_eq!(c.public_url.unwrap().origin(), "http://127.0.0.1:8700");
        for bad in [
            "ca.example.com",
            "ftp://x",
            "https://",
            "https://a b",
            "https://x/?q",
        ] {
            let e = error_of(url(bad));
            assert!(e.contains("server.public_url"), "{bad}: {e}");
        }
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
