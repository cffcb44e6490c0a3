//! One module per `tpa-ca` subcommand; `run` dispatches.

mod audit_tools;
mod config_check;
mod config_findings;
mod database;
mod demo;
mod demo_guide;
mod demo_hosts;
mod hash_password;
mod held_checkpoints;
mod init;
mod integrations;
mod issue;
mod krl;
mod ldap_findings;
mod ldap_test;
mod migrate;
mod migrate_store;
mod policy;
mod principals;
mod report;
mod revoke;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{
    AuditCommand, Command, ConfigCommand, IntegrationsCommand, LdapCommand, PolicyCommand,
    ReportCommand,
};

pub use audit_tools::{VerifyReport, verify_database, verify_database_with};
pub use held_checkpoints::Checkpoints;
pub use init::{InitDatabase, InitOptions, init_data_dir, init_data_dir_with};
pub use migrate_store::{MigrateStoreArgs, StoreCopy, migrate_store};

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init {
            data_dir,
            passphrase_file,
            listen,
            database_url,
            database_password_file,
            database_ca_file,
        } => {
            let options = InitOptions {
                data_dir,
                passphrase_file,
                listen,
            };
            let database = init_database(database_url, database_password_file, database_ca_file);
            init::run(&options, &database)
        }
        Command::Migrate { config } => migrate::run(&config.config),
        Command::MigrateStore {
            from,
            to,
            to_password_file,
            to_ca_file,
        } => migrate_store::run(&MigrateStoreArgs {
            from,
            to,
            to_password_file,
            to_ca_file,
        }),
        Command::Serve { config, listen } => serve::run(&config.config, listen),
        Command::Demo { dir, listen } => demo::run(&dir, listen),
        Command::Config {
            command: ConfigCommand::Check(args),
        } => config_check::run(&args.config.config, &args.bastion_configs),
        Command::Issue(args) => issue::run(&args),
        Command::Principals {
            config,
            group,
            login,
        } => principals::run(&config.config, &group, login.as_deref()),
        Command::HashPassword => hash_password::run(),
        Command::Ldap { command } => run_ldap(command),
        Command::Audit { command } => run_audit(command),
        Command::Revoke { target } => revoke::run(&target),
        Command::Krl { config, out } => krl::run(&config.config, &out),
        Command::Report { command } => run_report(command),
        Command::Policy { command } => run_policy(command),
        Command::Integrations {
            command:
                IntegrationsCommand::Test {
                    config,
                    send_test_alert,
                },
        } => integrations::run_test(&config.config, send_test_alert),
    }
}

/// `tpa-ca init --database-url …`: PostgreSQL, its files made absolute (the
/// configuration written lives elsewhere); SQLite otherwise.
fn init_database(
    url: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
) -> InitDatabase {
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    match url {
        None => InitDatabase::Sqlite,
        Some(url) => InitDatabase::Postgres(crate::config::PostgresConfig {
            url,
            password_file: password_file.map(absolute),
            ca_file: ca_file.map(absolute),
        }),
    }
}

fn run_ldap(command: LdapCommand) -> anyhow::Result<ExitCode> {
    match command {
        LdapCommand::Test {
            config,
            username,
            bind,
            connector,
        } => ldap_test::run(&config.config, &username, bind, connector.as_deref()),
    }
}

fn run_audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify {
            config,
            file,
            public_key,
            checkpoints,
            require_signed_tail,
        } => audit_tools::verify(&audit_tools::VerifyArgs {
            config: config.as_deref(),
            file: file.as_deref(),
            public_key: public_key.as_deref(),
            checkpoints: &checkpoints,
            require_signed_tail,
        }),
        AuditCommand::Export {
            config,
            since,
            until,
        } => audit_tools::export(&config.config, since.as_deref(), until.as_deref()),
        AuditCommand::Checkpoint(config) => audit_tools::checkpoint(&config.config),
    }
}

fn run_report(command: ReportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReportCommand::Access {
            config,
            since,
            until,
            format,
        } => report::run(&config.config, &since, until.as_deref(), format),
    }
}

fn run_policy(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Explain {
            config,
            user,
            groups,
            role,
            host,
            duration,
            json,
        } => policy::run_explain(
            &config.config,
            &user,
            &groups,
            (&role, &host, duration.as_deref()),
            json,
        ),
        PolicyCommand::Test { config, cases } => policy::run_test(&config.config, &cases),
    }
}
