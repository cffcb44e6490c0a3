//! `tpa-bastion`: the jump host in front of production hosts.
//!
//! Only the command surface exists so far; `serve` refuses to start rather than
//! run a bastion that checks nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Verified SSH jump host for TPA certificates.
#[derive(Debug, Parser)]
#[command(name = "tpa-bastion", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve SSH connections.
    Serve {
        /// The bastion's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config } => {
            // Keep the russh version (and so the shared ssh-key) locked from day one.
            let _ = russh::keys::ssh_key::Algorithm::Ed25519;
            eprintln!(
                "tpa-bastion: serve ({}) is not available in this build yet; refusing to start",
                config.display()
            );
            ExitCode::from(2)
        }
    }
}
