//! The shared state of a serving CA: the key, the database handles, the
//! identity connectors, the limiters and the wake-up channels.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::audit::checkpoint::AuditKey;
use crate::auth::identity::Identities;
use crate::auth::login_limit::PasswordLimiter;
use crate::auth::rate_limit::{self, AddressRateLimiter, DecisionRateLimiter, LoginRateLimiter};
use crate::config::{Config, DatabaseConfig};
use crate::listener::ConnectionStats;
use crate::notify::{OutboxBell, Waiters};
use crate::signer::Signer;
use crate::store::{Database, Session};
use crate::workflow::issuer::Issuer;
use crate::workflow::service::Services;

/// How many read-only connections the server keeps (SQLite), or how many
/// connections one replica opens at most (PostgreSQL; the issuance thread,
/// the background tasks and the handlers' blocking calls share them).
const READERS: usize = 4;
const PG_CONNECTIONS: usize = 8;

/// How long start-up may wait for the database.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The CA key.
    pub signer: Arc<Signer>,
    /// The SQLite database file (for fresh health checks); empty on PostgreSQL.
    pub database_path: PathBuf,
    /// The store, reached through `workflow::db` (blocking calls, never
    /// held across `.await`): the SQLite writer connection (handed out under
    /// a deadline) and read-only connections that never wait for it, or a
    /// pool of PostgreSQL connections.
    pub database: Arc<Database>,
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
    /// On PostgreSQL: wakes `waiters` when another replica changes a
    /// request (LISTEN/NOTIFY); stops when the last state is dropped.
    pub replicas: Option<Arc<crate::notify::replicas::ReplicaWakeups>>,
    /// Wakes the webhook senders after something was queued.
    pub bell: OutboxBell,
    /// Signs audit checkpoints (when `[audit]` configures a key).
    pub audit_key: Option<Arc<AuditKey>>,
    /// Open and refused HTTP connections (for `/metrics`).
    pub connections: Arc<ConnectionStats>,
    /// On-call providers and ticket systems (issue 17).
    pub integrations: Arc<crate::integrations::Integrations>,
    /// The external policy hook (`[policy_hook]`), if configured.
    pub policy_hook: Option<Arc<crate::policy_hook::PolicyHook>>,
}

impl AppState {
    /// The handles the request use cases reach ([`Services`]).
    pub fn services(&self) -> Services {
        Services {
            database: self.database.clone(),
            config: self.config.clone(),
            identities: self.identities.clone(),
            signer: self.signer.clone(),
            integrations: self.integrations.clone(),
            policy_hook: self.policy_hook.clone(),
            decision_limiter: self.decision_limiter.clone(),
            waiters: self.waiters.clone(),
            bell: self.bell.clone(),
        }
    }

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
        let database = Arc::new(open_database(config)?);
        database.session(Instant::now() + START_DEADLINE, |conn| {
            crate::workflow::revocation::check_signing_key(conn, &signer.fingerprint())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            register_sinks(conn, config)
        })?;
        let policy_hook = config
            .policy_hook
            .clone()
            .map(crate::policy_hook::PolicyHook::new)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .map(Arc::new);
        let integrations = crate::integrations::Integrations::from_config(&config.integrations)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        database
            .session(Instant::now() + START_DEADLINE, |conn| {
                crate::integrations::comments::register_sinks(conn, &integrations)
            })
            .context("cannot register the ticket comment senders")?;
        let waiters = Waiters::default();
        let bell = OutboxBell::default();
        let replicas = match &config.database {
            DatabaseConfig::Postgres(pg) => Some(Arc::new(
                crate::notify::replicas::ReplicaWakeups::spawn(
                    pg.options().map_err(anyhow::Error::msg)?,
                    waiters.clone(),
                    bell.clone(),
                )
                .context("cannot listen for the changes of other replicas")?,
            )),
            DatabaseConfig::Sqlite { .. } => None,
        };
        let signer = Arc::new(signer);
        let config = Arc::new(config.clone());
        if let (Some(writer), Some(dir)) = (database.sqlite_writer(), config.database_path.parent())
        {
            writer.guard_disk(
                dir.to_path_buf(),
                config.health.min_free_space_mb.saturating_mul(1024 * 1024),
            );
        }
        let identities = Arc::new(identities);
        let issuer = Issuer::spawn(
            database.clone(),
            signer.clone(),
            config.clone(),
            identities.clone(),
        )
        .context("cannot start the issuance writer thread")?;
        Ok(Self {
            signer,
            database_path: config.database_path.clone(),
            database,
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
            waiters,
            replicas,
            bell,
            audit_key,
            connections: Arc::new(ConnectionStats::default()),
            integrations: Arc::new(integrations),
            policy_hook,
        })
    }
}

/// Opens the configured store: the SQLite file (migrated as `store::open`
/// does) or the PostgreSQL database, which must be at this build's schema.
/// The delivery loops (webhooks, audit sinks, alerts, ticket comments) run
/// over it too, whichever the engine (`app::tasks`).
fn open_database(config: &Config) -> anyhow::Result<Database> {
    match &config.database {
        DatabaseConfig::Sqlite { path } => {
            Database::open_sqlite(path, READERS).context("cannot open the database")
        }
        DatabaseConfig::Postgres(pg) => {
            let options = pg.options().map_err(anyhow::Error::msg)?;
            Database::open_postgres(options, PG_CONNECTIONS)
                .context("cannot open the PostgreSQL database")
        }
    }
}

/// Gives every configured delivery its cursor (start-up, before serving).
fn register_sinks(conn: &mut Session<'_>, config: &Config) -> anyhow::Result<()> {
    crate::notify::register_sinks(conn, &config.webhooks)
        .context("cannot register the webhooks")?;
    crate::audit::sinks::register(conn, &config.audit_sinks)
        .context("cannot register the audit sinks")?;
    crate::alerts::register(conn, &config.alerts, &config.alert_destinations)
        .context("cannot register the alert rules and destinations")?;
    Ok(())
}
