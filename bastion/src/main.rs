//! `tpa-bastion`: parse arguments, set up logging, serve until SIGTERM or SIGINT.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bastion::ca_client::CaClient;
use bastion::{Bastion, BastionConfig, Fanout, Trust, feed, host_key, recorder, refusals, trust};
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
    raise_file_limit();
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
        let client = match (&config.ca_url, &config.ca_token_file) {
            (Some(url), Some(token_file)) => Some(
                CaClient::from_token_file(url, token_file)
                    .context("cannot set up the CA client")?,
            ),
            _ => {
                tracing::warn!(
                    "insecure_without_ca_feed: no revocation feed (revoked certificates and ended requests are let in and not cut) and session records stay in the spool"
                );
                None
            }
        };
        // Fail closed: with a feed, start from the saved revocation state, or
        // refuse logins until the first poll answers.
        let saved = match &client {
            None => None,
            Some(_) => match feed::load_state(&config.revocation_state_file, feed::unix_now()) {
                Ok(Some(state)) => Some(state),
                Ok(None) => {
                    tracing::warn!(
                        path = %config.revocation_state_file.display(),
                        "no saved revocation state: refusing logins until the CA's revocation feed answers"
                    );
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "refusing logins until the CA's revocation feed answers");
                    None
                }
            },
        };
        let mut trust = Trust {
            cas,
            ..Trust::default()
        };
        let state = saved.unwrap_or_default();
        state.publish_into(&mut trust);
        trust.revocations_pending = client.is_some() && state.cursor.is_none();
        trust.require_active = client.is_some();
        let (recorder, delivery) = recorder::start(config.session_spool.clone(), client.clone());
        let (reporter, reports) =
            refusals::start(config.refusal_spool.clone(), client.clone(), refusals::WINDOW);
        let sink = Fanout(vec![Arc::new(recorder), Arc::new(reporter)]);
        let bastion = Bastion::bind(&config, key.key, trust, Arc::new(sink))
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let mut background = tokio::task::JoinSet::new();
        background.spawn(trust::refresh(
            config.trust.clone(),
            bastion.trust_updates(),
            config.trust_refresh,
            until_stopped(stopped.clone()),
        ));
        if let Some(client) = client {
            background.spawn(feed::run(
                client,
                bastion.trust_updates(),
                config.revocation_poll,
                bastion.poll_requests(),
                state,
                config.revocation_state_file.clone(),
                until_stopped(stopped.clone()),
            ));
        }
        let shutdown = shutdown_signal();
        tracing::info!(
            listen = %bastion.local_addr().context("cannot read the listening address")?,
            host_key = fingerprint,
            hosts = config.inventory.len(),
            spool = %config.session_spool.display(),
            refusal_spool = %config.refusal_spool.display(),
            "tpa-bastion serving"
        );
        bastion.run_until(shutdown).await;
        let _ = stop.send(true);
        while background.join_next().await.is_some() {}
        // Records of the sessions just cut are spooled; give delivery a moment.
        tokio::join!(
            delivery.finish(Duration::from_secs(5)),
            reports.finish(Duration::from_secs(5))
        );
        tracing::info!("tpa-bastion stopped");
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard limit: every connection
/// and every forward holds a descriptor, and systemd's default soft limit
/// (1,024) is below `max_connections` plus `max_unauthenticated`.
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let mut raised = before;
    raised.current = before.maximum;
    let result = setrlimit(Resource::Nofile, raised);
    let after = getrlimit(Resource::Nofile);
    tracing::info!(
        soft_before = ?before.current,
        soft = ?after.current,
        hard = ?after.maximum,
        error = result.err().map(|e| e.to_string()),
        "open-file limit"
    );
}

/// Installs the SIGTERM and SIGINT handlers now (before the bastion says
/// it serves: a signal before that would end it without cutting and
/// recording its sessions) and returns what completes on either.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
