//! A bound, ready-to-run CA server: the state ([`AppState`]), the HTTP
//! router and the accept loop, and the background tasks, started together
//! and stopped together.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::app::AppState;
use crate::config::Config;

/// A bound, ready-to-run server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Loads the state ([`AppState::load`]) and binds the listener. Fails
    /// closed: any problem with the key, the accounts or the database stops start-up.
    pub async fn build(config: &Config, listen: Option<SocketAddr>) -> anyhow::Result<Self> {
        let addr = listen.unwrap_or(config.listen);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        Self::build_on(config, listener).await
    }

    /// Like [`Application::build`] on a listener bound by the caller (tests
    /// that must know the port before writing `server.public_url`). Discovers
    /// the OpenID providers; one that does not answer is left unavailable.
    pub async fn build_on(config: &Config, listener: TcpListener) -> anyhow::Result<Self> {
        // Before anything opens files: a 1,024 soft limit must not cap the server.
        crate::listener::raise_fd_limit();
        // Off the async runtime: loading blocks (file I/O, argon2, and the
        // PostgreSQL client, which must not run on a runtime thread).
        let owned = config.clone();
        let state = tokio::task::spawn_blocking(move || AppState::load(&owned))
            .await
            .context("the start-up task failed")??;
        state.identities.discover_oidc().await;
        Ok(Self { listener, state })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (for in-process tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let state = self.state.clone();
        let background = crate::app::tasks::spawn(&state, &stopped)?;
        let limits = self.state.config.server_limits.clone();
        let connections = self.state.connections.clone();
        let app = crate::http::router(self.state);
        let served = crate::listener::serve(self.listener, app, &limits, connections, shutdown)
            .await
            .context("HTTP server failed");
        let _ = stop.send(true);
        for task in background {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
        served
    }
}

/// Installs the SIGTERM and SIGINT handlers now and returns what completes
/// on either. Call it before announcing the listening address: a signal
/// that arrives before the handlers are installed would end the process
/// without its graceful shutdown.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the CA with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}
