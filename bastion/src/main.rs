//! `tpa-bastion`: parse arguments, set up logging, serve until SIGTERM or SIGINT.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bastion::{Bastion, BastionConfig, NoSink, Trust, host_key, trust};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Verified SSH jump host for TPA certificates.
#[derive(Debug, Parser)]
#[command(name = "tpa-bastion", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve SSH connections (stops on SIGTERM or SIGINT).
    Serve {
        /// The bastion's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tpa-bastion: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("TPA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = BastionConfig::load(config_path)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let key = host_key::load_or_create(&config.host_key_file)?;
        if key.created {
            tracing::info!(
                path = %config.host_key_file.display(),
                fingerprint = key.fingerprint(),
                "created a new host key; pin it in known_hosts"
            );
        }
        let fingerprint = key.fingerprint();
        let cas = trust::load(&config.trust)
            .await
            .context("cannot load the trusted user CA keys")?;
        let trust = Trust {
            cas,
            revocations: Default::default(),
        };
        let bastion = Bastion::bind(&config, key.key, trust, Arc::new(NoSink))
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(
            listen = %bastion.local_addr().context("cannot read the listening address")?,
            host_key = fingerprint,
            hosts = config.inventory.len(),
            "tpa-bastion serving"
        );
        bastion.run_until(shutdown_signal()).await;
        tracing::info!("tpa-bastion stopped");
        Ok(())
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
