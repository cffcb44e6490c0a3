//! One module per `tpa-ca` subcommand; `run` dispatches.

mod audit_tools;
mod config_check;
mod demo;
mod hash_password;
mod init;
mod issue;
mod principals;
mod serve;

use std::process::ExitCode;

use crate::cli::{AuditCommand, Command, ConfigCommand};

pub use audit_tools::{VerifyReport, verify_database};
pub use init::{InitOptions, init_data_dir};

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init {
            data_dir,
            passphrase_file,
            listen,
        } => init::run(&InitOptions {
            data_dir,
            passphrase_file,
            listen,
        }),
        Command::Serve { config, listen } => serve::run(&config.config, listen),
        Command::Demo { dir, listen } => demo::run(&dir, listen),
        Command::Config {
            command: ConfigCommand::Check(config),
        } => config_check::run(&config.config),
        Command::Issue(args) => issue::run(&args),
        Command::Principals {
            config,
            group,
            login,
        } => principals::run(&config.config, &group, login.as_deref()),
        Command::HashPassword => hash_password::run(),
        Command::Audit {
            command: AuditCommand::Verify { config, file },
        } => audit_tools::verify(config.as_deref(), file.as_deref()),
        Command::Audit {
            command: AuditCommand::Export(config),
        } => audit_tools::export(&config.config),
    }
}
