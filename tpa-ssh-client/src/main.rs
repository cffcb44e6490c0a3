//! `tpa-ssh`: the engineer's command line. Log in, ask for access, wait for the
//! decision, get a short-lived certificate, use plain ssh.

mod agent;
mod cli;
mod client;
mod commands;
mod connect;
mod files;
mod grants;
mod host_config;
mod loopback;
mod password;
mod settings;
mod ssh_config;
mod sso;
mod target;
mod wait;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
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
    match runtime.block_on(commands::run(cli)) {
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
