//! The PostgreSQL engine: connecting (TLS through rustls), transactions, and
//! the statement cache behind [`Sql`](super::sql::Sql) for PostgreSQL.
//!
//! A [`PgConn`] is one synchronous client (the `postgres` crate, which runs
//! tokio-postgres on a small runtime of its own), used from blocking threads
//! like a rusqlite connection. Statements are prepared once per connection
//! and cached by their SQL text.

pub mod listen;
mod migrate;
mod tls;

pub use migrate::{SCHEMA_VERSION as PG_SCHEMA_VERSION, dump_schema, migrate, schema_version};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use postgres::{Client, Statement};

use super::StoreError;
use super::sql::{Engine, Param, Row, Sql, postgres_placeholders};

/// Advisory lock keys, one place for all (a `bigint` each; "tpa" in ASCII
/// in the high bytes keeps them apart from other applications' keys).
pub mod locks {
    /// Held (session-wide) while migrations run, so two replicas starting at
    /// once do not both migrate.
    pub const MIGRATE: i64 = 0x7470_6100_0000_0001;
    /// Held (to the end of the transaction) by every write transaction
    /// ([`PgConn::begin_write`](super::PgConn::begin_write)) and every
    /// transaction that appends to the audit chain: the one linear chain
    /// across replicas, and one writer at a time as on SQLite.
    pub const AUDIT_CHAIN: i64 = 0x7470_6100_0000_0002;
}

/// How to reach the database: the URL (`postgres://user@host:port/db?…`)
/// and the password read from `database.password_file`, kept out of the URL.
#[derive(Clone)]
pub struct PgOptions {
    /// The connection URL or key/value string, without a password.
    pub url: String,
    /// The password, when the server asks for one.
    pub password: Option<String>,
    /// PEM file of CA certificates that sign the server's certificate, in
    /// place of the public web roots (`database.ca_file`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// One connection to PostgreSQL.
pub struct PgConn {
    client: RefCell<Client>,
    statements: RefCell<HashMap<String, Statement>>,
    /// Whether a transaction of ours is open on it.
    in_transaction: Cell<bool>,
    /// Rows changed by statements on it since it opened, as SQLite's
    /// `total_changes()`: the write health turns green only on a call that
    /// wrote, so a read-only session does not hide a database that refuses
    /// writes (a standby after failover).
    changes: Cell<u64>,
    /// When the call holding this connection must be answered (set by the
    /// pool), and the lock timeout set on the session now (`None`: unknown).
    /// PostgreSQL counts `lock_timeout` per statement, so a call whose
    /// statements wait for locks one after another would wait past its
    /// deadline; each statement therefore starts with a lock timeout no
    /// longer than what is left (within [`DEADLINE_SLACK`]). Only waiting is
    /// bounded, as waiting for SQLite's writer is: a transaction that holds
    /// its locks runs to its end.
    deadline: Cell<Option<Instant>>,
    timeouts: Cell<Option<Duration>>,
    /// The session's `statement_timeout` as [`PgConn::set_deadline`] last
    /// set it (`None`: unknown).
    statement_timeout: Cell<Option<Duration>>,
    /// Whether the lock timeout was set inside the open transaction.
    lowered_in_transaction: Cell<bool>,
    /// Whether the open transaction holds the writers' lock.
    writers_locked: Cell<bool>,
}

/// How far past the call's deadline a lock wait may end: the lock timeout is
/// set again (one round trip) only once it exceeds what is left by more.
const DEADLINE_SLACK: Duration = Duration::from_millis(100);

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("statements", &self.statements.borrow().len())
            .finish_non_exhaustive()
    }
}

/// An open transaction on a [`PgConn`]; rolled back when dropped unfinished.
#[derive(Debug)]
pub struct PgTx<'c> {
    conn: &'c PgConn,
}

/// Connects, with TLS when the URL's `sslmode` asks for it. Blocking.
pub fn connect(options: &PgOptions) -> Result<PgConn, StoreError> {
    let mut config = postgres::Config::from_str(&options.url)
        .map_err(|e| StoreError::Config(format!("database.url: {e}")))?;
    if let Some(password) = &options.password {
        config.password(password.as_bytes());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("tpa-ca");
    }
    // A peer that vanished (failover, cable) is noticed in seconds, not at
    // the kernel's default two hours.
    config.keepalives_idle(Duration::from_secs(10));
    config.tcp_user_timeout(Duration::from_secs(10));
    let tls = tls::connector(options.ca_file.as_deref())?;
    let client = config.connect(tls)?;
    Ok(PgConn {
        client: RefCell::new(client),
        statements: RefCell::new(HashMap::new()),
        in_transaction: Cell::new(false),
        changes: Cell::new(0),
        deadline: Cell::new(None),
        timeouts: Cell::new(None),
        statement_timeout: Cell::new(None),
        lowered_in_transaction: Cell::new(false),
        writers_locked: Cell::new(false),
    })
}

/// Connects ([`connect`]) to a database that `tpa-ca migrate` brought to
/// this build's schema; any other version is refused with a pointer to
/// `tpa-ca migrate`, never used half-migrated. Blocking.
pub fn connect_current(options: &PgOptions) -> Result<PgConn, StoreError> {
    let conn = connect(options)?;
    let version = schema_version(&conn)?;
    if version != PG_SCHEMA_VERSION {
        return Err(StoreError::Config(format!(
            "the PostgreSQL store is at schema version {version}, this build expects \
             {PG_SCHEMA_VERSION}; run `tpa-ca migrate` with the newer of the two"
        )));
    }
    Ok(conn)
}

impl PgConn {
    /// Runs `f` in a transaction (READ COMMITTED, PostgreSQL's default) and
    /// commits when it returns `Ok`; rolls back otherwise.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&PgTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.begin_write()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Opens a write transaction: `BEGIN`, then the writers' lock
    /// ([`locks::AUDIT_CHAIN`]) before anything is read, so that the write
    /// transactions of all replicas run one at a time, as SQLite's `BEGIN
    /// IMMEDIATE` makes them on one host. Without it, READ COMMITTED lets a
    /// replica decide on a request it read before another replica's deny,
    /// revoke or cancel committed, and overwrite it (issue 15 review: an
    /// approval landing over a deny, a certificate for a revoked request);
    /// and taking this lock first in every writer leaves no lock order to
    /// deadlock on. The waits end at the statement's `lock_timeout`.
    ///
    /// `BEGIN` and the lock travel together, in one round trip: every round
    /// trip a writer makes is waited for by the writers queued behind it.
    pub fn begin_write(&self) -> Result<PgTx<'_>, StoreError> {
        let tx = self.open(format!(
            "BEGIN; SELECT pg_advisory_xact_lock({})",
            locks::AUDIT_CHAIN
        ))?;
        self.writers_locked.set(true);
        Ok(tx)
    }

    /// Opens a transaction without the writers' lock (for what only reads,
    /// or takes its locks itself, like `migrate-store`).
    pub fn begin(&self) -> Result<PgTx<'_>, StoreError> {
        self.open("BEGIN".to_owned())
    }

    /// Sends `sql`, which starts with `BEGIN`; when it fails part way, the
    /// transaction it may have opened is rolled back.
    fn open(&self, sql: String) -> Result<PgTx<'_>, StoreError> {
        if self.in_transaction.get() {
            return Err(StoreError::Corrupt(
                "a transaction is already open on this connection".into(),
            ));
        }
        self.within_deadline()?;
        self.in_transaction.set(true);
        // Dropped on failure: ROLLBACK (a no-op when BEGIN never ran).
        let tx = PgTx { conn: self };
        self.batch_raw(&sql)?;
        Ok(tx)
    }

    /// Whether the connection is gone (the server closed it or it broke);
    /// a pool replaces such a connection.
    pub fn is_closed(&self) -> bool {
        self.client.try_borrow().is_ok_and(|c| c.is_closed())
    }

    fn client(&self) -> Result<std::cell::RefMut<'_, Client>, StoreError> {
        self.client.try_borrow_mut().map_err(|_| {
            StoreError::Corrupt("a statement ran while a result was being read".into())
        })
    }

    fn statement(&self, client: &mut Client, sql: &str) -> Result<Statement, StoreError> {
        if let Some(stmt) = self.statements.borrow().get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = client.prepare(&postgres_placeholders(sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    pub(super) fn execute_pg(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        self.within_deadline()?;
        let mut client = self.client()?;
        let stmt = self.statement(&mut client, sql)?;
        let params: Vec<_> = params.iter().map(|p| p.as_postgres()).collect();
        let changed = client.execute(&stmt, &params)?;
        self.changes.set(self.changes.get().saturating_add(changed));
        Ok(changed)
    }

    /// Sets (or clears) the deadline of the call holding this connection:
    /// its statements may take until then (`statement_timeout`), and no
    /// lock wait on it lasts past the deadline (plus [`DEADLINE_SLACK`]).
    /// Fails with [`Fault::DeadlinePassed`](super::Fault::DeadlinePassed)
    /// when the deadline has passed already.
    ///
    /// Timeouts an earlier call set are kept when they differ from what this
    /// call has left by no more than the slack (a pool's calls mostly have
    /// the same deadline): one round trip less per call.
    pub fn set_deadline(&self, deadline: Option<Instant>) -> Result<(), StoreError> {
        self.deadline.set(deadline);
        let Some(deadline) = deadline else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StoreError::Condition(super::Fault::DeadlinePassed));
        }
        let close = |set: Option<Duration>| {
            set.is_some_and(|set| set <= left + DEADLINE_SLACK && left <= set + DEADLINE_SLACK)
        };
        if !self.in_transaction.get()
            && close(self.statement_timeout.get())
            && close(self.timeouts.get())
        {
            return Ok(());
        }
        self.statement_timeout.set(None);
        self.timeouts.set(None);
        if self.in_transaction.get() {
            self.lowered_in_transaction.set(true);
        }
        // Never zero: zero turns PostgreSQL's timeouts off.
        let ms = left.max(Duration::from_millis(1)).as_millis();
        self.batch_raw(&format!(
            "SET statement_timeout = {ms}; SET lock_timeout = {ms}"
        ))?;
        // Outside a transaction (a pool's checkout), so no rollback undoes it.
        if !self.in_transaction.get() {
            self.statement_timeout.set(Some(left));
        }
        self.timeouts.set(Some(left));
        Ok(())
    }

    /// Lowers the session's lock timeout to what is left of the deadline
    /// (at least 1 ms) when it exceeds that by more than the slack.
    fn within_deadline(&self) -> Result<(), StoreError> {
        let Some(deadline) = self.deadline.get() else {
            return Ok(());
        };
        // Never zero: zero turns PostgreSQL's lock timeout off.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if self
            .timeouts
            .get()
            .is_some_and(|set| set <= left + DEADLINE_SLACK)
        {
            return Ok(());
        }
        // Unset first: a SET inside a transaction that then rolls back is
        // undone, and the next statement must not trust it.
        self.timeouts.set(None);
        if self.in_transaction.get() {
            self.lowered_in_transaction.set(true);
        }
        self.batch_raw(&format!("SET lock_timeout = {}", left.as_millis()))?;
        self.timeouts.set(Some(left));
        Ok(())
    }

    /// Rows changed by statements on this connection since it opened.
    pub fn total_changes(&self) -> u64 {
        self.changes.get()
    }

    pub(super) fn query_each_pg(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        self.within_deadline()?;
        let mut client = self.client()?;
        let stmt = self.statement(&mut client, sql)?;
        let params = params.iter().map(|p| p.as_postgres());
        let mut rows = client.query_raw(&stmt, params)?;
        while let Some(row) = rows.next()? {
            f(&Row::Postgres(&row))?;
        }
        Ok(())
    }

    pub(super) fn batch_pg(&self, sql: &str) -> Result<(), StoreError> {
        self.within_deadline()?;
        self.batch_raw(sql)
    }

    /// [`PgConn::batch_pg`] without the deadline: for ending transactions,
    /// which must run whatever time is left.
    fn batch_raw(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client()?.batch_execute(sql)?)
    }

    /// A transaction ended: a lock timeout set inside it may have been
    /// undone (a rollback), so it is no longer known.
    fn ended(&self) {
        self.in_transaction.set(false);
        self.writers_locked.set(false);
        if self.lowered_in_transaction.replace(false) {
            self.timeouts.set(None);
        }
    }
}

impl PgTx<'_> {
    /// Runs `f` inside a savepoint (`SAVEPOINT` / `ROLLBACK TO SAVEPOINT` /
    /// `RELEASE`): an `Err` from `f` rolls back only `f`'s writes, and a
    /// statement that failed inside `f` no longer aborts the transaction.
    pub fn savepoint<T, E>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        super::sql::savepoint(self, f)
    }

    /// The connection the transaction runs on.
    pub(super) fn conn(&self) -> &PgConn {
        self.conn
    }

    /// Commits. An error here after the server may have received the COMMIT
    /// leaves the outcome unknown: callers treat it as a failure (nothing is
    /// handed out), and what did commit stays in the audit trail.
    ///
    /// The COMMIT is not cut short by the deadline's `statement_timeout`: a
    /// COMMIT cancelled while it waits for a synchronous standby is reported
    /// by PostgreSQL as a success (with a warning) although the standby may
    /// not have it, and a certificate handed out then could lose its row in a
    /// failover. The `SET LOCAL` also makes COMMIT on a transaction an
    /// earlier error aborted fail, instead of PostgreSQL's silent ROLLBACK.
    pub fn commit(self) -> Result<(), StoreError> {
        let result = self
            .conn
            .batch_raw("SET LOCAL statement_timeout = 0; COMMIT");
        if result.is_err() {
            // Whatever failed, leave no transaction open on the connection.
            let _ = self.conn.batch_raw("ROLLBACK");
        }
        self.conn.ended();
        std::mem::forget(self);
        result
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        // Best effort: a broken connection is dropped by its pool anyway.
        if let Err(e) = self.conn.batch_raw("ROLLBACK") {
            tracing::debug!("rollback failed: {e}");
        }
        self.conn.ended();
    }
}

/// A connection to a fresh, migrated database on the test process's
/// PostgreSQL server (see `tests/support/postgres_server.rs`).
#[cfg(test)]
pub(crate) fn test_database() -> (PgOptions, PgConn) {
    let db = super::postgres_server::PgServer::shared().database();
    let options = PgOptions {
        url: db.url,
        password: Some(db.password),
        ca_file: None,
    };
    let mut conn = connect(&options).expect("connect to the test database");
    migrate(&mut conn).expect("migrate the test database");
    (options, conn)
}

// The statement API over PostgreSQL; `sql` knows nothing of this engine.
impl Sql for PgConn {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        self.execute_pg(sql, params)
    }
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.query_each_pg(sql, params, f)
    }
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        self.batch_pg(sql)
    }
}

impl Sql for PgTx<'_> {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }
    fn holds_writers_lock(&self) -> bool {
        self.conn().writers_locked.get()
    }
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        self.conn().execute_pg(sql, params)
    }
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.conn().query_each_pg(sql, params, f)
    }
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        self.conn().batch_pg(sql)
    }
}

#[cfg(test)]
mod tests;
