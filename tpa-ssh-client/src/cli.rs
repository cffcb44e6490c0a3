//! Command-line interface of `tpa-ssh`.

use clap::{Args, Parser, Subcommand};

/// Temporary production access with short-lived SSH certificates.
#[derive(Debug, Parser)]
#[command(name = "tpa-ssh", version, about)]
pub struct Cli {
    /// The CA's URL (default: the one you logged in to, or $TPA_CA_URL).
    #[arg(long, global = true, env = "TPA_CA_URL")]
    pub ca: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `tpa-ssh` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to the CA: with your company SSO in the browser (default), or with a
    /// local account (`--username`).
    Login {
        /// A local account name (password login) instead of SSO.
        #[arg(long)]
        username: Option<String>,
        /// With --username: read the password from the first line of standard input.
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// SSO on a machine without a browser: show a URL and a short code to
        /// confirm in a browser on any machine, and wait (device login).
        #[arg(long, conflicts_with = "username")]
        no_browser: bool,
    },
    /// Revoke your token at the CA and forget it.
    Logout,
    /// Who you are logged in as, your groups and when the token expires.
    Whoami(JsonFlag),
    /// Ask for a role on some hosts for a while.
    Request(RequestArgs),
    /// Show a request (default: your most recent).
    Status {
        /// The request id.
        id: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List your requests.
    List(JsonFlag),
    /// Cancel a pending request or end an active one early.
    Cancel {
        /// The request id.
        id: String,
    },
    /// Get a fresh certificate for an approved request (default: your active grant).
    Cert {
        /// The request id.
        id: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `tpa-ssh request …`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The role.
    #[arg(long)]
    pub role: String,
    /// A host (repeat for several).
    #[arg(long = "host", required = true)]
    pub hosts: Vec<String>,
    /// How long, e.g. 2h (default: the role's default).
    #[arg(long = "for")]
    pub duration: Option<String>,
    /// Why.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Ticket or incident id.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Scheduled start (RFC 3339).
    #[arg(long)]
    pub start: Option<String>,
    /// Wait for the decision, then fetch the certificate.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}
