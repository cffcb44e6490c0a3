//! `tpa-ssh`: the engineer's command line. Login, request, wait, certificate, plain ssh.
//!
//! Only the command surface exists so far; each subcommand says that it is not
//! available yet and exits non-zero, so no script can mistake it for success.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Temporary production access with short-lived SSH certificates.
#[derive(Debug, Parser)]
#[command(name = "tpa-ssh", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to the CA with your company SSO.
    Login,
    /// Forget the session token and revoke it at the CA.
    Logout,
    /// Show who you are logged in as.
    Whoami,
    /// Ask for a role on some hosts for a while.
    Request,
    /// Show the state of a request.
    Status,
    /// List your requests.
    List,
    /// Cancel a request.
    Cancel,
    /// Get or refresh the certificate for an approved request.
    Cert,
    /// Write the ssh_config snippet.
    Config,
    /// Connect to a host, requesting access if needed.
    Ssh,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "tpa-ssh: {:?} is not available in this build yet; use `tpa-ca issue` on the CA for now",
        cli.command
    );
    ExitCode::from(2)
}
