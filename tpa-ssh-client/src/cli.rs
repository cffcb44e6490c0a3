//! Command-line interface of `tpa-ssh`.

use clap::{Args, Parser, Subcommand};

/// Temporary production access with short-lived SSH certificates.
#[derive(Debug, Parser)]
#[command(name = "tpa-ssh", version, about)]
pub struct Cli {
    /// The CA's URL (default: $TPA_CA_URL, then `ca_url` in ~/.config/tpa/config.toml
    /// for `login`; the CA you logged in to for everything else).
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
    /// Ask the CA's policy whether you may request ROLE on HOST, what the
    /// certificate would carry and who would approve.
    Explain {
        /// The role.
        #[arg(long)]
        role: String,
        /// The host.
        #[arg(long)]
        host: String,
        /// The duration (default: the role's default).
        #[arg(long = "for")]
        duration: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Cancel a pending request or end an active one early.
    Cancel {
        /// The request id.
        id: String,
    },
    /// Get or refresh the certificate for an active grant (default: your most
    /// recent one). The saved certificate is reused until it is close to expiry.
    Cert {
        /// The request id.
        id: Option<String>,
        /// Ask the CA for a fresh certificate even if the saved one has time left.
        #[arg(long)]
        renew: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Write the ssh_config snippet (~/.ssh/tpa_config) and include it from
    /// ~/.ssh/config, so that plain `ssh HOST` uses the TPA certificate.
    Config(ConfigArgs),
    /// Connect with ssh: uses an active grant covering HOST, or asks for one
    /// (role and reason from the flags, or asked on a terminal) and waits.
    Ssh(SshArgs),
    /// Print shell completions: `tpa-ssh completions bash > ~/.local/share/bash-completion/completions/tpa-ssh`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `tpa-ssh config …`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// A host pattern to route through TPA, e.g. 'web-*' (repeat for several;
    /// default: host_patterns in ~/.config/tpa/config.toml, then the CA's).
    #[arg(long = "host-pattern")]
    pub host_patterns: Vec<String>,
    /// Your login at the bastion (`User` of the tpa-bastion alias); default
    /// `tpa`, which the TPA bastion accepts with any valid TPA certificate.
    #[arg(long)]
    pub bastion_login: Option<String>,
    /// Print the snippet instead of writing anything.
    #[arg(long)]
    pub print: bool,
    /// Write without asking (the patterns and bastion are still shown);
    /// needed when standard input is not a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

/// `tpa-ssh ssh …`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// The host, optionally as LOGIN@HOST (default login: yours if the
    /// certificate allows it, otherwise its first principal).
    pub host: String,
    /// The role to ask for when no active grant covers the host.
    #[arg(long)]
    pub role: Option<String>,
    /// Why (asked for on a terminal when missing).
    #[arg(long)]
    pub reason: Option<String>,
    /// How long, e.g. 2h (default: the role's default).
    #[arg(long = "for")]
    pub duration: Option<String>,
    /// Ticket or incident id.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Arguments for ssh after `--`: options and the remote command.
    #[arg(last = true)]
    pub ssh_args: Vec<String>,
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
    #[arg(long, conflicts_with = "incident")]
    pub ticket: Option<String>,
    /// Emergency: approve your own request at once, for roles with a
    /// break_glass rule (within its max_duration). Needs --incident and a
    /// --reason; every approver is notified and a post-incident review follows.
    #[arg(long, requires = "incident")]
    pub break_glass: bool,
    /// The incident id for --break-glass (stored as the request's ticket).
    #[arg(long, value_name = "ID", requires = "break_glass")]
    pub incident: Option<String>,
    /// Scheduled start (RFC 3339).
    #[arg(long)]
    pub start: Option<String>,
    /// Wait for the decision, then fetch the certificate.
    #[arg(long)]
    pub wait: bool,
    /// While waiting, how long to keep retrying a CA that cannot be reached
    /// (a restart) before giving up; the request stays pending either way.
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub ca_retry: String,
    #[command(flatten)]
    pub json: JsonFlag,
}
