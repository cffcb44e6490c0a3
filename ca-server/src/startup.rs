//! Building and running the HTTP server: `Application::build`, `port`, `run_until_stopped`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rusqlite::Connection;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::rate_limit::LoginRateLimiter;
use crate::identity::Identities;
use crate::signer::Signer;
use crate::store::{self, Create};

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The CA key.
    pub signer: Arc<Signer>,
    /// The database file (for fresh health checks).
    pub database_path: PathBuf,
    /// The writer connection; used from blocking tasks only, never across `.await`.
    pub db: Arc<Mutex<Connection>>,
    /// Identity connectors (local accounts today).
    pub identities: Arc<Identities>,
    /// The configuration the server was built from.
    pub config: Arc<Config>,
    /// Failed-login limits shared by the API and the web login.
    pub login_limiter: Arc<LoginRateLimiter>,
}

/// A bound, ready-to-run server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl AppState {
    /// Loads the key and the identity connectors and opens the database.
    /// Fails closed: any problem with the key, the accounts or the database is an error.
    /// Blocking (file I/O, one argon2 hash).
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let signer = Signer::load(&config.ca).context("cannot load the CA key")?;
        let identities =
            Identities::from_config(config).context("cannot load the identity configuration")?;
        let conn = store::open(&config.database_path, Create::Never)
            .context("cannot open the database")?;
        Ok(Self {
            signer: Arc::new(signer),
            database_path: config.database_path.clone(),
            db: Arc::new(Mutex::new(conn)),
            identities: Arc::new(identities),
            config: Arc::new(config.clone()),
            login_limiter: Arc::new(LoginRateLimiter::default()),
        })
    }
}

impl Application {
    /// Loads the state ([`AppState::load`]) and binds the listener. Fails
    /// closed: any problem with the key, the accounts or the database stops start-up.
    pub async fn build(config: &Config, listen: Option<SocketAddr>) -> anyhow::Result<Self> {
        let state = AppState::load(config)?;
        let addr = listen.unwrap_or(config.listen);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
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
        let app = crate::http::router(self.state);
        // Client addresses feed the login rate limit and the audit trail's source.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the CA with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}
