//! Command-line interface of `tpa-ca`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// TPA certificate authority: short-lived OpenSSH user certificates for approved access.
#[derive(Debug, Parser)]
#[command(name = "tpa-ca", version, about)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `tpa-ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a CA key, a configuration file and an empty database in a new data directory.
    Init {
        /// Directory to create (or an empty existing one).
        #[arg(long)]
        data_dir: PathBuf,
        /// Encrypt the CA key with the passphrase in this file (mode 0600).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Address the server will listen on.
        #[arg(long, default_value = crate::config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Keep the store in this (empty) PostgreSQL database instead of a
        /// SQLite file: postgres://user@host:port/dbname?sslmode=require
        /// (no password in the URL).
        #[arg(long)]
        database_url: Option<String>,
        /// The file holding the PostgreSQL password (mode 0600).
        #[arg(long, requires = "database_url")]
        database_password_file: Option<PathBuf>,
        /// PEM CA certificates that sign the PostgreSQL server's certificate.
        #[arg(long, requires = "database_url")]
        database_ca_file: Option<PathBuf>,
    },
    /// Bring the database's schema up to this build (SQLite or PostgreSQL).
    /// `serve` also migrates at start; run this before rolling replicas.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Copy a SQLite store into an empty, migrated PostgreSQL database, in one
    /// transaction, and verify the copy (row counts, the audit chain).
    MigrateStore {
        /// The SQLite database to copy: sqlite:PATH (at this build's schema).
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: postgres://user@host:port/dbname?sslmode=require
        /// (no password in the URL).
        #[arg(long)]
        to: String,
        /// The file holding the PostgreSQL password (mode 0600).
        #[arg(long)]
        to_password_file: Option<PathBuf>,
        /// PEM CA certificates that sign the PostgreSQL server's certificate.
        #[arg(long)]
        to_ca_file: Option<PathBuf>,
    },
    /// Run the CA's HTTP server.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listen on this address instead of server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Try TPA locally: creates ./tpa-demo on first run, then serves it.
    Demo {
        /// The demo's data directory.
        #[arg(long, default_value = "tpa-demo")]
        dir: PathBuf,
        /// Listen address.
        #[arg(long, default_value = crate::config::DEFAULT_LISTEN)]
        listen: SocketAddr,
    },
    /// Check a configuration file, the CA key and the database.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Break-glass: sign a certificate directly (audited; TTL capped by admin_issue.max_ttl).
    Issue(IssueArgs),
    /// Print the AuthorizedPrincipalsFile lines a host of a host group installs
    /// (roles with host_scoped_principals).
    Principals {
        #[command(flatten)]
        config: ConfigArg,
        /// The host group (a name from [host_groups]).
        #[arg(long)]
        group: String,
        /// Only the principal for this login (one file per login: AuthorizedPrincipalsFile .../%u).
        #[arg(long)]
        login: Option<String>,
    },
    /// Read a password (one line) on standard input and print its argon2id hash for `password_hash`.
    HashPassword,
    /// Verify, export or checkpoint the audit trail.
    Audit {
        /// What to do with the audit trail.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Revoke certificates: by serial, request, user or CA key (audited, final).
    Revoke {
        /// What to revoke.
        #[command(subcommand)]
        target: RevokeTarget,
    },
    /// Write the KRL (OpenSSH key revocation list) to a file, atomically.
    Krl {
        #[command(flatten)]
        config: ConfigArg,
        /// The file to write (replaced through a temporary file and a rename).
        #[arg(long)]
        out: PathBuf,
    },
    /// Reports over the audit data.
    Report {
        /// Which report.
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Directory connectors (`[[ldap]]`).
    Ldap {
        /// What to do.
        #[command(subcommand)]
        command: LdapCommand,
    },
    /// Ask the policy: explain one request, or test a table of expected answers.
    Policy {
        /// What to ask.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// On-call providers, ticket systems, the policy hook and alert destinations.
    Integrations {
        /// What to do.
        #[command(subcommand)]
        command: IntegrationsCommand,
    },
}

/// `tpa-ca integrations …`.
#[derive(Debug, Subcommand)]
pub enum IntegrationsCommand {
    /// Ask each configured provider and the policy hook once, read-only, and
    /// print what they answered; list the alert destinations (sent a test
    /// alert only with --send-test-alert).
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// Also send one alert, labelled as a test (severity info, a dedup
        /// key of this run), to each [[alert_destinations]] entry: it may
        /// page whoever is on call there.
        #[arg(long)]
        send_test_alert: bool,
    },
}

/// `tpa-ca ldap …`.
#[derive(Debug, Subcommand)]
pub enum LdapCommand {
    /// Find USERNAME in the directory with the service account and print
    /// the DN, the stable id, the directory groups and the mapped TPA groups.
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// The login name to look up.
        #[arg(long)]
        username: String,
        /// Also bind as the user: reads the password (one line) on standard input.
        #[arg(long)]
        bind: bool,
        /// The connector's name (default: every `[[ldap]]` connector in turn).
        #[arg(long)]
        connector: Option<String>,
    },
}

/// `tpa-ca policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Whether USER may request ROLE on HOST, what certificates would carry,
    /// and who would approve.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// The user (a local account; or name their groups with --group).
        #[arg(long)]
        user: String,
        /// The user's groups, for users who are not local accounts (repeat the flag).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The role.
        #[arg(long)]
        role: String,
        /// The host.
        #[arg(long)]
        host: String,
        /// The duration (default: the role's default_duration).
        #[arg(long = "for")]
        duration: Option<String>,
        /// Print JSON (the API's ExplainView) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a table of expected answers (CASES.toml); exits 1 naming every
    /// case whose answer changed.
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// The cases file.
        cases: PathBuf,
    },
}

/// `tpa-ca revoke …`.
#[derive(Debug, Subcommand)]
pub enum RevokeTarget {
    /// One certificate, by serial.
    Serial {
        /// The certificate serial (decimal).
        serial: String,
        #[command(flatten)]
        common: RevokeArgs,
    },
    /// Every certificate of a request; its grant ends now.
    Request {
        /// The request id (req_…).
        id: String,
        #[command(flatten)]
        common: RevokeArgs,
    },
    /// Every active grant and live certificate of a user (break-glass ones included).
    User {
        /// The username.
        username: String,
        #[command(flatten)]
        common: RevokeArgs,
    },
    /// Every certificate a CA key signed (an old key of a rotation; never the signing key).
    CaKey {
        /// The CA key's SHA-256 fingerprint (SHA256:…, from `ssh-keygen -lf KEY.pub`).
        fingerprint: String,
        #[command(flatten)]
        common: RevokeArgs,
    },
}

/// What every `tpa-ca revoke` takes.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Why (recorded in the audit trail). Required.
    #[arg(long)]
    pub reason: String,
    /// Operator name for the audit trail (default: the login running the command).
    #[arg(long)]
    pub admin: Option<String>,
}

/// `tpa-ca report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Who had which role on which hosts in a period, with reasons and approvers.
    Access {
        #[command(flatten)]
        config: ConfigArg,
        /// Start of the period (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        since: String,
        /// End of the period (RFC 3339; default: now).
        #[arg(long)]
        until: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
        format: ReportFormat,
    },
}

/// Report output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON document.
    Json,
}

/// `--config FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The CA's configuration file.
    #[arg(long, env = "TPA_CONFIG")]
    pub config: PathBuf,
}

/// `tpa-ca config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration, the CA key and the database, and report problems.
    Check(CheckArgs),
}

/// `tpa-ca config check …`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// A bastion's bastion.toml whose ca_token_file must match a [[bastions]]
    /// entry (repeat for several).
    #[arg(long = "bastion-config", value_name = "FILE")]
    pub bastion_configs: Vec<std::path::PathBuf>,
}

/// `tpa-ca issue …`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Login the certificate is valid for (repeat for several).
    #[arg(long = "principal", required = true)]
    pub principals: Vec<String>,
    /// Lifetime, e.g. 10m or 1h.
    #[arg(long, allow_hyphen_values = true)]
    pub ttl: String,
    /// The user's public key file (.pub).
    #[arg(long)]
    pub pubkey: PathBuf,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    pub reason: String,
    /// Grant an extension such as permit-pty (repeat for several; none by default).
    #[arg(long = "extension")]
    pub extensions: Vec<String>,
    /// Critical option force-command.
    #[arg(long)]
    pub force_command: Option<String>,
    /// Critical option source-address (comma-separated addresses or CIDR blocks).
    #[arg(long)]
    pub source_address: Option<String>,
    /// Administrator name for the audit trail (default: the login running the command).
    #[arg(long)]
    pub admin: Option<String>,
}

/// `tpa-ca audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit non-zero naming the first bad record.
    Verify {
        /// The CA's configuration file (verifies its database).
        #[arg(
            long,
            env = "TPA_CONFIG",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        config: Option<PathBuf>,
        /// Verify this export file (JSON lines) instead of a database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The audit public key (audit_key.pub) that signed the checkpoints
        /// (default with --config: audit.key_file + ".pub").
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Also hold the trail against the signed checkpoints in this file (a
        /// checkpoint file or an earlier export); repeat for several.
        #[arg(long = "checkpoints")]
        checkpoints: Vec<PathBuf>,
        /// Exit 1 when events at the end are covered by no signed
        /// checkpoint (they could have been cut, replaced or invented).
        #[arg(long)]
        require_signed_tail: bool,
    },
    /// Print the audit trail as JSON lines, then the signed checkpoints of that range.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Only events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
    },
    /// Sign the chain head now with the audit key (the server also does it periodically).
    Checkpoint(ConfigArg),
}
