//! The subcommands of `tpa-ssh`, one file each, and [`run`], which starts
//! the async runtime, runs the one asked for and prints its error.

mod cancel;
mod cert;
mod completions;
mod config;
mod explain;
mod list;
mod login;
mod logout;
mod report;
mod request;
mod ssh;
mod status;
mod whoami;

use std::process::ExitCode;

use tpa_core::api::StoredSession;

use crate::api::Client;
use crate::cli::{Cli, Command};
use crate::local::{session, settings};

/// Runs the command line: the exit status, after the error (if any) is
/// printed through the free-text rule.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tpa-ssh: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            // Errors carry text from the CA and the file system: printed
            // through the free-text rule, never raw.
            let message = tpa_core::text::printable(&format!("{err:#}"), true, usize::MAX);
            eprintln!("tpa-ssh: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand.
async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.command, Command::Completions { .. }) {
        // A broken settings file is reported whatever the command.
        settings::load()?;
    }
    let ca = cli.ca.as_deref();
    match cli.command {
        Command::Login {
            username: Some(username),
            password_stdin,
            ..
        } => login::with_password(ca, &username, password_stdin).await,
        Command::Login {
            username: None,
            no_browser,
            ..
        } => login::with_sso(ca, no_browser).await,
        Command::Logout => logout::run().await,
        Command::Whoami(j) => whoami::run(ca, j.json).await,
        Command::Request(args) => request::run(ca, args).await,
        Command::Status { id, json } => status::run(ca, id.as_deref(), json.json).await,
        Command::List(j) => list::run(ca, j.json).await,
        Command::Explain {
            role,
            host,
            duration,
            json,
        } => explain::run(ca, (&role, &host, duration.as_deref()), json.json).await,
        Command::Cancel { id } => cancel::run(ca, &id).await,
        Command::Cert { id, renew, json } => cert::run(ca, id.as_deref(), renew, json.json).await,
        Command::Config(args) => config::run(ca, args).await,
        Command::Ssh(args) => ssh::run(ca, args).await,
        Command::Completions { shell } => completions::run(shell),
    }
}

/// The saved login and a client acting with it (`--ca`, when given, must
/// name the same CA).
fn logged_in(ca: Option<&str>) -> anyhow::Result<(Client, StoredSession)> {
    let session = session::load_for(ca)?;
    let client = Client::logged_in(&session)?;
    Ok((client, session))
}
