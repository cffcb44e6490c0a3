//! `tpa-ca serve`: load everything (failing closed), then serve until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::Config;
use crate::server::{Application, shutdown_signal};

pub(super) fn run(config_path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    serve(&config, listen, |_| {})
}

/// Builds the application, calls `announce` with the bound address, and serves.
pub(super) fn serve(
    config: &Config,
    listen: Option<SocketAddr>,
    announce: impl FnOnce(SocketAddr),
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let app = Application::build(config, listen).await?;
        let addr = app.local_addr().context("cannot read the bound address")?;
        let shutdown = shutdown_signal();
        tracing::info!(%addr, ca_key = %app.state().signer.fingerprint(), "tpa-ca listening");
        announce(addr);
        app.run_until_stopped(shutdown).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}
