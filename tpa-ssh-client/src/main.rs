//! `tpa-ssh`: the engineer's command line. Log in, ask for access, wait for the
//! decision, get a short-lived certificate, use plain ssh.

mod agent;
mod cli;
mod client;
mod commands;
mod connect;
mod files;
mod grants;
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
            eprintln!("tpa-ssh: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
