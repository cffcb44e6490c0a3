//! The shared state of a serving CA: the key, the database handles, the
//! identity connectors, the limiters and the wake-up channels.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::audit::checkpoint::AuditKey;
use crate::auth::identity::Identities;
use crate::auth::login_limit::PasswordLimiter;
use crate::auth::rate_limit::{self, AddressRateLimiter, DecisionRateLimiter, LoginRateLimiter};
use crate::config::Config;
use crate::listener::ConnectionStats;
use crate::notify::{OutboxBell, Waiters};
use crate::signer::Signer;
use crate::store::{self, Create, ReadPool, Writer};
use crate::workflow::issuer::Issuer;
use crate::workflow::service::Services;

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
    /// The store the workflow reaches (through `workflow::db`): on SQLite the
    /// same writer and readers as `db` and `readers`.
    pub database: Arc<store::Database>,
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
        let mut conn = store::open(&config.database_path, Create::Never)
            .context("cannot open the database")?;
        crate::workflow::revocation::check_signing_key(&conn, &signer.fingerprint())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::notify::register_sinks(&mut conn, &config.webhooks)
            .context("cannot register the webhooks")?;
        crate::audit::sinks::register(&mut conn, &config.audit_sinks)
            .context("cannot register the audit sinks")?;
        crate::alerts::register(&mut conn, &config.alerts, &config.alert_destinations)
            .context("cannot register the alert rules and destinations")?;
        let policy_hook = config
            .policy_hook
            .clone()
            .map(crate::policy_hook::PolicyHook::new)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .map(Arc::new);
        let integrations = crate::integrations::Integrations::from_config(&config.integrations)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::integrations::comments::register_sinks(&mut conn, &integrations)
            .context("cannot register the ticket comment senders")?;
        let readers = ReadPool::open(&config.database_path, READERS)
            .context("cannot open the database for reading")?;
        let signer = Arc::new(signer);
        let config = Arc::new(config.clone());
        let db = Arc::new(Writer::new(conn));
        let readers = Arc::new(readers);
        let database = Arc::new(store::Database::sqlite(db.clone(), readers.clone()));
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
            db,
            readers,
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
            waiters: Waiters::default(),
            bell: OutboxBell::default(),
            audit_key,
            connections: Arc::new(ConnectionStats::default()),
            integrations: Arc::new(integrations),
            policy_hook,
        })
    }
}
