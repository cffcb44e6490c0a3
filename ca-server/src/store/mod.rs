//! All SQL lives here: opening the database, migrations, and one file per table group.
//!
//! Store functions are plain synchronous functions over a connection or a
//! transaction; callers run them off the async runtime. On SQLite, writes use
//! `BEGIN IMMEDIATE` so that a transaction never upgrades from reader to writer.
//!
//! # Two engines, one store (issue 15)
//!
//! SQLite (rusqlite) is the embedded default; PostgreSQL is the store of
//! several replicas. Decisions, with their reasons:
//!
//! - **Synchronous on both engines.** PostgreSQL goes through the `postgres`
//!   crate (the blocking face of tokio-postgres), not async tokio-postgres
//!   with deadpool. The workflow is written as closures over one open
//!   transaction (`store::write(conn, |tx| …)`, the issuance writer's group
//!   commit with savepoints); keeping store functions synchronous lets the
//!   same closures run on either engine on the blocking threads that already
//!   run them, instead of a second, async copy of every use case. The cost is
//!   a thread per in-flight statement, which the SQLite path already pays,
//!   and one small current-thread runtime per PostgreSQL connection.
//! - **One SQL text per statement.** Table files call [`sql::Sql`], which
//!   `rusqlite::Connection`/`Transaction` and [`pg::PgConn`]/[`pg::PgTx`]
//!   implement, with SQLite's `?N` placeholders rewritten to `$N` for
//!   PostgreSQL ([`sql::postgres_placeholders`]). Statements keep to the
//!   dialect both share (`ON CONFLICT`, `RETURNING`, `coalesce`, `||`);
//!   where they cannot, the function branches on [`sql::Engine`] right
//!   there (locking, mostly). Values cross as `i64`, `String`, `bool`,
//!   `Option`; times stay RFC 3339 text in both, so ordering and comparison
//!   are the same. Store functions take `&impl Sql`, so callers that pass a
//!   rusqlite transaction today keep compiling while the table files move
//!   over one by one.
//! - **Migrations per engine.** `migrations/*.sql` for SQLite (version in
//!   `PRAGMA user_version`), `pg/migrations/*.sql` for PostgreSQL (version in
//!   `tpa_schema`, applied under an advisory lock so replicas starting
//!   together migrate once). `docs/schema.sql` and `docs/schema-postgres.sql`
//!   are each checked against a migrated database by a test.
//! - **What SQLite gets from one process, PostgreSQL gets from the
//!   database.** The audit chain append takes a transaction-scoped advisory
//!   lock ([`pg::locks::AUDIT_CHAIN`]) before reading the head, so every
//!   replica appends to one linear chain; unique serials and the
//!   one-transaction issuance rest on constraints and row locks, never on a
//!   process-local mutex.
//! - **One-use rows stay one-use across replicas.** A read-then-update of
//!   a row that may be used once (an OpenID login state, a CLI login code,
//!   a device code) reads it `FOR UPDATE` on PostgreSQL, so a second
//!   replica's read waits for the first's commit and sees the row spent;
//!   a conditional `UPDATE … WHERE decision IS NULL` (consents; reviews
//!   alike) counts once by itself. SQLite's single writer gives both.
//! - **Savepoints** ([`sql::savepoint`], `Tx::savepoint`, `PgTx::savepoint`)
//!   isolate one job of a shared transaction on either engine; on
//!   PostgreSQL rolling back to one also clears the aborted state a failed
//!   statement leaves.
//! - **TLS through rustls on ring** (tokio-postgres-rustls), the same
//!   provider as the rest of the workspace; no OpenSSL, no aws-lc-rs.
//! - **Faults.** [`Fault`] classifies PostgreSQL SQLSTATEs and connection
//!   failures as it does SQLite's codes: conditions answer 503 with
//!   Retry-After, never 500.

pub mod alerts;
pub mod audit;
pub mod audit_checkpoints;
pub mod audit_sinks;
pub mod audit_views;
pub mod audited;
pub mod auth_tokens;
pub mod bastion_sessions;
pub mod certificates;
pub mod changes;
pub mod cli_consents;
pub mod copy;
mod database;
pub mod device_logins;
pub mod engine;
pub mod fault;
pub mod heartbeat;
pub mod integrations;
pub mod leases;
pub mod oidc_logins;
pub mod outbox;
pub mod pg;
pub mod pg_pool;
mod pool;
#[cfg(test)]
#[path = "../../tests/support/postgres_server.rs"]
pub(crate) mod postgres_server;
pub mod reports;
pub mod requests;
pub mod reviews;
pub mod revocations;
pub mod sql;
pub mod wal_checkpoint;
pub mod window_ends;
mod writer;

pub use database::Database;
pub use engine::{Conn, Session, Transact, Tx};
pub use fault::{Fault, MaybeFault};
pub use pool::ReadPool;
pub use writer::{WriteHealth, WriteStatus, Writer, WriterGuard};

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

/// Migrations in order; index + 1 is the schema version they produce.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_requests.sql"),
    include_str!("migrations/0003_outbox.sql"),
    include_str!("migrations/0004_auth.sql"),
    include_str!("migrations/0005_break_glass_reviews.sql"),
    include_str!("migrations/0006_oidc_state.sql"),
    include_str!("migrations/0007_bastion_sessions.sql"),
    include_str!("migrations/0008_revocations.sql"),
    include_str!("migrations/0009_audit_checkpoints.sql"),
    include_str!("migrations/0010_audit_sinks.sql"),
    include_str!("migrations/0011_device_logins.sql"),
    include_str!("migrations/0012_cli_consents.sql"),
    include_str!("migrations/0013_bastion_events.sql"),
    include_str!("migrations/0014_heartbeat.sql"),
    include_str!("migrations/0015_device_tokens.sql"),
    include_str!("migrations/0016_display_names.sql"),
    include_str!("migrations/0017_grant_snapshots.sql"),
    include_str!("migrations/0018_integrations.sql"),
    include_str!("migrations/0019_alerts.sql"),
    include_str!("migrations/0020_delivery_leases.sql"),
    include_str!("migrations/0021_window_end_notices.sql"),
    include_str!("migrations/0022_alert_lease.sql"),
];

/// The schema version this build expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file does not exist (and we were not asked to create it).
    #[error("database {0} does not exist; run `tpa-ca init` or fix database.path")]
    Missing(String),
    /// The database was written by a newer TPA.
    #[error(
        "database schema version {found} is newer than this build understands ({SCHEMA_VERSION}); upgrade tpa-ca"
    )]
    TooNew {
        /// The version found.
        found: i64,
    },
    /// SQLite reported an error.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL (or the connection to it) reported an error; shown with
    /// the server's own message or the underlying cause (the client's
    /// error alone says only "db error").
    #[error("{}", postgres_message(.0))]
    Postgres(#[from] ::postgres::Error),
    /// The `[database]` settings cannot be used (a bad URL, an unreadable
    /// CA file); fix the configuration.
    #[error("{0}")]
    Config(String),
    /// Stored data is not what the schema promises.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A shared transaction (an issuance batch) was rolled back, or its
    /// writer stopped; nothing of it was committed.
    #[error("{0}")]
    Aborted(String),
    /// A condition of the world (disk full, locked past the deadline, …);
    /// nothing was committed and a retry later may succeed.
    #[error("{0}")]
    Condition(Fault),
}

impl StoreError {
    /// Whether a COMMIT that failed with this error may still have
    /// committed: only a PostgreSQL client error without the server's own
    /// answer (a broken connection, an answer the client could not read).
    /// SQLite's COMMIT, and a PostgreSQL server's error, are definite.
    pub fn commit_outcome_unknown(&self) -> bool {
        match self {
            StoreError::Postgres(e) => e.as_db_error().is_none(),
            StoreError::Condition(fault) => *fault == Fault::Unreachable,
            _ => false,
        }
    }
}

/// A PostgreSQL client error with what caused it: the server's message
/// (`db error: permission denied …`) or the I/O or TLS cause.
fn postgres_message(e: &::postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{e}: {}", db.message()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// Whether `open` may create a missing database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `init` and `demo`: create it.
    IfMissing,
    /// Everything else: a missing database is an error, not a fresh start.
    Never,
}

/// Opens the database, sets the connection PRAGMAs and applies pending migrations.
pub fn open(path: &Path, create: Create) -> Result<Connection, StoreError> {
    sqlite_only(path)?;
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if create == Create::IfMissing {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    } else if !path.exists() {
        return Err(StoreError::Missing(path.display().to_string()));
    }
    let mut conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// The configuration gives an empty SQLite path when `database.url` names
/// PostgreSQL; what does not run on PostgreSQL yet says so instead of
/// looking for a file named "".
pub(crate) fn sqlite_only(path: &Path) -> Result<(), StoreError> {
    if path.as_os_str().is_empty() {
        return Err(StoreError::Config(
            "database.url names a PostgreSQL store, but this step opens a SQLite file \
             (database.path); only `tpa-ca demo` is SQLite by design (see docs/configuration.md, [database])"
                .into(),
        ));
    }
    Ok(())
}

/// Sets the PRAGMAs every connection needs. Issuance and audit commit durably.
fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "cannot switch to WAL journal mode (got {mode})"
        )));
    }
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA trusted_schema = OFF;",
    )?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found: version });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits when it returns `Ok`.
pub fn write<T, E: From<rusqlite::Error>>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Runs `f` inside a savepoint of the caller's rusqlite transaction (the
/// issuance batch's today; [`Tx::savepoint`] and [`pg::PgTx::savepoint`] are
/// the same on either engine). When `f` returns
/// `Err`, only its own changes are rolled back and the transaction goes on.
/// The outer `Err` means the savepoint itself could not be handled (for
/// example SQLite already rolled the whole transaction back); the caller must
/// then abandon the transaction.
pub fn savepoint<T, E>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<Result<T, E>, rusqlite::Error> {
    let run = |sql: &str| tx.prepare_cached(sql)?.execute([]).map(drop);
    run("SAVEPOINT tpa_job")?;
    match f(tx) {
        Ok(value) => {
            run("RELEASE tpa_job")?;
            Ok(Ok(value))
        }
        Err(e) => {
            run("ROLLBACK TO tpa_job")?;
            run("RELEASE tpa_job")?;
            Ok(Err(e))
        }
    }
}

/// A cheap liveness check for `/healthz`: opens the file afresh (never creating
/// it), checks the schema version and reads the audit chain head.
pub fn check_health(path: &Path) -> Result<(), StoreError> {
    sqlite_only(path)?;
    if !path.exists() {
        return Err(StoreError::Missing(path.display().to_string()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(1))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "schema version {version}, expected {SCHEMA_VERSION}"
        )));
    }
    audit::head(&conn)?;
    Ok(())
}

/// The schema as SQLite reports it, normalised, for comparison with `docs/schema.sql`.
pub fn dump_schema(conn: &Connection) -> Result<String, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, name",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = String::new();
    for sql in rows {
        out.push_str(sql?.trim());
        out.push_str(";\n\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_docs() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"), Create::IfMissing).unwrap();
        let actual = dump_schema(&conn).unwrap();
        let expected = include_str!("../../../docs/schema.sql");
        let strip = |s: &str| -> String {
            s.lines()
                .filter(|l| !l.starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        };
        if strip(&actual) != strip(expected) {
            panic!("docs/schema.sql is out of date; replace its body with:\n{actual}");
        }
    }

    #[test]
    fn pragmas_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"), Create::IfMissing).unwrap();
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!((fk, sync, mode.as_str()), (1, 2, "wal"));
    }

    #[test]
    fn missing_database_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let r = open(&dir.path().join("t.db"), Create::Never);
        assert!(matches!(r, Err(StoreError::Missing(_))));
        assert!(!dir.path().join("t.db").exists());
    }

    #[test]
    fn reopening_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(&dir.path().join("t.db"), Create::IfMissing).unwrap());
        let conn = open(&dir.path().join("t.db"), Create::Never).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("t.db"), Create::IfMissing).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            open(&dir.path().join("t.db"), Create::Never),
            Err(StoreError::TooNew { found: 99 })
        ));
    }
}
