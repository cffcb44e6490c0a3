//! `tpa-ssh`: the engineer's command line. Log in, ask for access, wait for the
//! decision, get a short-lived certificate, use plain ssh.
//!
//! Layers, each using only the ones below it: `cmd` (one file per
//! subcommand) → `grants`, `wait` → `api` (the CA's endpoints as typed calls)
//! and `local` (what is kept on this machine); `cli` and `prompt` are leaves.

mod api;
mod cli;
mod cmd;
mod grants;
mod local;
mod prompt;
mod wait;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    cmd::run(cli::Cli::parse())
}
