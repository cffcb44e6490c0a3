//! Building and running the HTTP server: `Application::build`, `port`, `run_until_stopped`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::audit_checkpoint::AuditKey;
use crate::config::Config;
use crate::http::login_limit::PasswordLimiter;
use crate::http::rate_limit::{self, AddressRateLimiter, DecisionRateLimiter, LoginRateLimiter};
use crate::identity::Identities;
use crate::listener::ConnectionStats;
use crate::notify::{OutboxBell, Waiters};
use crate::signer::Signer;
use crate::store::{self, Create, ReadPool, Writer};
use crate::workflow::issuer::Issuer;

/// How many read-only connections the server keeps.
const READERS: usize = 4;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The CA key.
    pub signer: Arc<Signer>,
    /// The database file (for fresh health checks).
    pub database_path: PathBuf,
    /// The writer connection, handed out under a deadline; used from
    /// blocking tasks and the issuance writer thread only, never across `.await`.
    pub db: Arc<Writer>,
    /// Read-only connections for reads (tokens, requests), so that reads never
    /// wait for the writer.
    pub readers: Arc<ReadPool>,
    /// The issuance writer thread (group commit of certificate issuance).
    pub issuer: Issuer,
    /// Identity connectors (local accounts today).
    pub identities: Arc<Identities>,
    /// The configuration the server was built from.
    pub config: Arc<Config>,
    /// Failed-login limits shared by the API and the web login.
    pub login_limiter: Arc<PasswordLimiter>,
    /// Decision limits (approve, deny, cancel) shared by the API and the web forms.
    pub decision_limiter: Arc<DecisionRateLimiter>,
    /// SSO, CLI and device logins started per client address.
    pub login_start_limiter: Arc<AddressRateLimiter>,
    /// Failed SSO callbacks, CLI code exchanges and unknown device codes per address.
    pub sso_failure_limiter: Arc<AddressRateLimiter>,
    /// Wrong device user codes, per user (identity) and per address.
    pub user_code_limiter: Arc<LoginRateLimiter>,
    /// Clients waiting for a decision on a request.
    pub waiters: Waiters,
    /// Wakes the webhook senders after something was queued.
    pub bell: OutboxBell,
    /// Signs audit checkpoints (when `[audit]` configures a key).
    pub audit_key: Option<Arc<AuditKey>>,
    /// Open and refused HTTP connections (for `/metrics`).
    pub connections: Arc<ConnectionStats>,
    /// The external policy hook (`[policy_hook]`), if configured.
    pub policy_hook: Option<Arc<crate::policy_hook::PolicyHook>>,
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
        let audit_key = config
            .audit
            .as_ref()
            .map(|a| AuditKey::load(&a.key_file))
            .transpose()
            .context("cannot load the audit key (audit.key_file)")?
            .map(Arc::new);
        let identities =
            Identities::from_config(config).context("cannot load the identity configuration")?;
        let mut conn = store::open(&config.database_path, Create::Never)
            .context("cannot open the database")?;
        crate::workflow::revocation::check_signing_key(&conn, &signer.fingerprint())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::notify::register_sinks(&mut conn, &config.webhooks)
            .context("cannot register the webhooks")?;
        crate::audit_sinks::register(&mut conn, &config.audit_sinks)
            .context("cannot register the audit sinks")?;
        crate::alerts::register(&mut conn, &config.alerts, &config.alert_destinations)
            .context("cannot register the alert rules and destinations")?;
        let readers = ReadPool::open(&config.database_path, READERS)
            .context("cannot open the database for reading")?;
        let policy_hook = config
            .policy_hook
            .clone()
            .map(crate::policy_hook::PolicyHook::new)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .map(Arc::new);
        let signer = Arc::new(signer);
        let config = Arc::new(config.clone());
        let db = Arc::new(Writer::new(conn));
        let identities = Arc::new(identities);
        let issuer = Issuer::spawn(
            db.clone(),
            signer.clone(),
            config.clone(),
            identities.clone(),
        )
        .context("cannot start the issuance writer thread")?;
        Ok(Self {
            signer,
            database_path: config.database_path.clone(),
            db,
            readers: Arc::new(readers),
            issuer,
            identities,
            config,
            login_limiter: Arc::new(PasswordLimiter::default()),
            decision_limiter: Arc::new(DecisionRateLimiter::default()),
            login_start_limiter: Arc::new(AddressRateLimiter::new(
                rate_limit::STARTS_PER_IP,
                rate_limit::WINDOW,
            )),
            sso_failure_limiter: Arc::new(AddressRateLimiter::new(
                rate_limit::SSO_FAILURES_PER_IP,
                rate_limit::WINDOW,
            )),
            user_code_limiter: Arc::new(LoginRateLimiter::default()),
            waiters: Waiters::default(),
            bell: OutboxBell::default(),
            audit_key,
            connections: Arc::new(ConnectionStats::default()),
            policy_hook,
        })
    }
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
        let state = AppState::load(config)?;
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
        let mut background = crate::notify::spawn_senders(
            state.database_path.clone(),
            state.config.webhooks.clone(),
            state.bell.clone(),
            stopped.clone(),
        )
        .context("cannot start the webhook senders")?;
        background.extend(
            crate::audit_sinks::spawn(
                state.database_path.clone(),
                state.config.audit_sinks.clone(),
                state.bell.clone(),
                stopped.clone(),
            )
            .context("cannot start the audit sinks")?,
        );
        background.extend(
            crate::alerts::spawn(
                state.database_path.clone(),
                state.config.alerts.clone(),
                state.config.alert_destinations.clone(),
                state.bell.clone(),
                stopped.clone(),
            )
            .context("cannot start the alert tasks")?,
        );
        background.push(tokio::spawn(expire_pending(state.clone(), stopped.clone())));
        background.push(tokio::spawn(probe_writes(state.clone(), stopped.clone())));
        background.push(tokio::spawn(sign_checkpoints(state, stopped)));
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

/// Expires pending requests whose pending TTL ran out, every 15 seconds, so
/// that their notifications go out even when nobody looks at them.
async fn expire_pending(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
            _ = stop.changed() => return,
        }
        let st = state.clone();
        let db = state.db.clone();
        let deadline = Instant::now() + state.config.write_deadline;
        let done = tokio::task::spawn_blocking(move || {
            db.run(deadline, |conn| {
                crate::workflow::requests::expire_due(conn, &st.config.policy, chrono::Utc::now())
                    .map_err(anyhow::Error::from)
            })
        })
        .await;
        match done {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(expired = n, "expired pending requests");
                state.bell.ring();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = format!("{e:#}"), "cannot expire pending requests")
            }
            Err(e) => tracing::warn!(error = %e, "expiry task failed"),
        }
    }
}

/// The write probe: rewrites the heartbeat row every `health.probe_interval`
/// under the usual write deadline, so that `/healthz` turns red when the
/// database stops taking writes even if nobody else writes, and green again
/// when it takes them.
async fn probe_writes(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.config.health.probe_interval) => {}
            _ = stop.changed() => return,
        }
        let db = state.db.clone();
        let deadline = Instant::now() + state.config.write_deadline;
        let done = tokio::task::spawn_blocking(move || {
            db.run(deadline, |conn| {
                store::write(conn, |tx| store::heartbeat::beat(tx, chrono::Utc::now()))
            })
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "write probe task failed");
        }
        // A failed probe was logged and recorded by `Writer::run`.
    }
}

/// Signs the audit chain head every `audit.checkpoint_interval` (when it
/// moved), and once more at shutdown.
async fn sign_checkpoints(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let (Some(key), Some(audit)) = (state.audit_key.clone(), state.config.audit.clone()) else {
        return;
    };
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(audit.checkpoint_interval.get()) => false,
            _ = stop.changed() => true,
        };
        let db = state.db.clone();
        let (key, file) = (key.clone(), audit.checkpoint_file.clone());
        let deadline = Instant::now() + state.config.write_deadline;
        let done = tokio::task::spawn_blocking(move || {
            db.run(deadline, |conn| {
                crate::audit_checkpoint::make(conn, &key, file.as_deref(), chrono::Utc::now())
            })
        })
        .await;
        match done {
            Ok(Ok(Some((c, true)))) => {
                tracing::info!(seq = c.seq, hash = c.hash, "signed audit checkpoint")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "cannot sign audit checkpoint"),
            Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
        }
        if stopping {
            return;
        }
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
