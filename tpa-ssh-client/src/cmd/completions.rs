//! `tpa-ssh completions SHELL`: the shell completion script (clap_complete).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::Cli;

/// `tpa-ssh completions bash|zsh|fish|elvish|powershell`.
pub fn run(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "tpa-ssh", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the completions")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
