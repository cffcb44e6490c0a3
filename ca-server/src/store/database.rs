//! The configured store behind one API, for the workflow to move onto: a
//! write transaction and a read, each under the request's deadline, on
//! SQLite (the one writer connection and the reader pool) or on PostgreSQL
//! (a [`PgPool`] per replica). Closures take the engine-neutral [`Tx`] and
//! [`Conn`], which the table files accept as `&impl Sql`.
//!
//! [`Database::session`] hands a use case that opens its own transactions
//! (`&mut impl Transact`) the connection for the whole step: the SQLite
//! writer (held, so steps stay serial) or a pooled PostgreSQL connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::pg::{self, PgOptions};
use super::pg_pool::PgPool;
use super::sql::Engine;
use super::{Conn, Create, MaybeFault, ReadPool, Session, StoreError, Tx, WriteHealth, Writer};

/// An open store of either engine.
#[derive(Debug)]
pub enum Database {
    /// One process on one SQLite file.
    Sqlite {
        /// The writer connection (shared with the SQLite-only background
        /// tasks: checkpoints, the issuance thread's checkpoint deferral).
        writer: Arc<Writer>,
        /// The read-only connections.
        readers: Arc<ReadPool>,
    },
    /// One replica of several on one PostgreSQL database.
    Postgres {
        /// The replica's connections, for writes and reads alike.
        pool: PgPool,
        /// How the last writes went.
        health: WriteHealth,
    },
}

impl Database {
    /// Opens an existing SQLite store (migrating it, as `store::open`
    /// does) with `readers` read-only connections. Blocking.
    pub fn open_sqlite(path: &Path, readers: usize) -> Result<Self, StoreError> {
        let writer = Writer::new(super::open(path, Create::Never)?);
        let readers = ReadPool::open(path, readers)?;
        Ok(Self::sqlite(Arc::new(writer), Arc::new(readers)))
    }

    /// A SQLite store over a writer and a reader pool opened by the caller.
    pub fn sqlite(writer: Arc<Writer>, readers: Arc<ReadPool>) -> Self {
        Database::Sqlite { writer, readers }
    }

    /// Connects to a PostgreSQL store that `tpa-ca migrate` brought to this
    /// build's schema, with at most `connections` connections. Blocking.
    pub fn open_postgres(options: PgOptions, connections: usize) -> Result<Self, StoreError> {
        drop(pg::connect_current(&options)?);
        Ok(Database::Postgres {
            pool: PgPool::new(options, connections),
            health: WriteHealth::default(),
        })
    }

    /// Which engine this is.
    pub fn engine(&self) -> Engine {
        match self {
            Database::Sqlite { .. } => Engine::Sqlite,
            Database::Postgres { .. } => Engine::Postgres,
        }
    }

    /// Runs `f` in one write transaction under `deadline` and commits when
    /// it returns `Ok`. A fault (503) turns the write health red, a commit
    /// green. Blocking.
    pub fn write<T, E>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError> + MaybeFault,
    {
        match self {
            Database::Sqlite { writer, .. } => writer.write_tx(deadline, f),
            Database::Postgres { pool, health } => {
                let result = pool.write(deadline, f);
                match &result {
                    Ok(_) => health.succeeded(),
                    Err(e) => {
                        if let Some(fault) = e.fault() {
                            health.failed(fault);
                        }
                    }
                }
                result
            }
        }
    }

    /// Runs `f` with a connection for one use case that opens its own
    /// transactions: the SQLite writer connection, held until `f` returns
    /// (waiting for it ends at `deadline`), or a pooled PostgreSQL connection
    /// whose statements and lock waits end at `deadline`. A fault turns the
    /// write health red; a call that changed something turns it green (on
    /// both engines: a read-only call proves nothing about writes). Blocking.
    pub fn session<T, E>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&mut Session<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError> + MaybeFault,
    {
        match self {
            Database::Sqlite { writer, .. } => {
                writer.run(deadline, |conn| f(&mut Session::Sqlite(conn)))
            }
            Database::Postgres { pool, health } => {
                let mut wrote = false;
                let result = pool.with(deadline, |conn| {
                    let before = conn.total_changes();
                    let result = f(&mut Session::Pooled(conn));
                    wrote = conn.total_changes() != before;
                    result
                });
                match &result {
                    Ok(_) if wrote => health.succeeded(),
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(fault) = e.fault() {
                            health.failed(fault);
                        }
                    }
                }
                result
            }
        }
    }

    /// Runs `f` with the connection of [`Database::session`] without
    /// recording the outcome in the write health (the issuance thread
    /// records a batch's outcome itself). `Err` only when no connection was
    /// free before `deadline` or none could be opened. Blocking.
    pub fn hold<T>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&mut Session<'_>) -> T,
    ) -> Result<T, StoreError> {
        match self {
            Database::Sqlite { writer, .. } => {
                let mut conn = writer.lock_until(deadline)?;
                Ok(f(&mut Session::Sqlite(&mut conn)))
            }
            Database::Postgres { pool, .. } => {
                pool.with(deadline, |conn| Ok(f(&mut Session::Pooled(conn))))
            }
        }
    }

    /// The SQLite writer, for what only SQLite has (its queue age, WAL
    /// checkpoints); `None` on PostgreSQL.
    pub fn sqlite_writer(&self) -> Option<&Arc<Writer>> {
        match self {
            Database::Sqlite { writer, .. } => Some(writer),
            Database::Postgres { .. } => None,
        }
    }

    /// Runs `f` on a connection for reading: a pooled read-only SQLite
    /// connection (which never waits for the writer), or a pooled
    /// PostgreSQL connection under `deadline`. Blocking.
    pub fn read<T, E: From<StoreError>>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Database::Sqlite { readers, .. } => readers.read(f),
            Database::Postgres { pool, .. } => pool.read(deadline, f),
        }
    }

    /// Whether the store opens and reads, as `/healthz` checks it: the
    /// SQLite file at `path` opened afresh (its schema version read), or a
    /// PostgreSQL round trip on a pooled connection within `within`.
    /// Blocking.
    pub fn check_health(&self, path: &Path, within: std::time::Duration) -> Result<(), StoreError> {
        match self {
            Database::Sqlite { .. } => super::check_health(path),
            Database::Postgres { pool, .. } => pool.read(Instant::now() + within, |conn| {
                super::sql::Sql::query_one(conn, "SELECT 1", &[], |r| r.get::<i32>(0)).map(drop)
            }),
        }
    }

    /// How the last writes went.
    pub fn health(&self) -> &WriteHealth {
        match self {
            Database::Sqlite { writer, .. } => writer.health(),
            Database::Postgres { health, .. } => health,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::Transact;
    use crate::store::sql::Sql;
    use crate::store::{Fault, audit};
    use tpa_core::audit::{NewEvent, Outcome};

    fn databases() -> Vec<(Database, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(super::super::open(&path, Create::IfMissing).unwrap());
        let sqlite = Database::open_sqlite(&path, 2).unwrap();
        let (options, _) = pg::test_database();
        let postgres = Database::open_postgres(options, 2).unwrap();
        vec![(sqlite, Some(dir)), (postgres, None)]
    }

    fn event(reason: &str) -> NewEvent {
        NewEvent {
            time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            actor: "admin:root".into(),
            source: "cli".into(),
            action: "test".into(),
            object: "none".into(),
            outcome: Outcome::Success,
            reason: reason.into(),
            details: serde_json::json!({}),
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    // issue 15: one closure writes through either engine; a failed write
    // leaves nothing; reads see what committed; a fault turns the write
    // health red until a write commits.
    #[test]
    fn one_write_api_on_both_engines() {
        for (db, _dir) in databases() {
            let engine = db.engine();
            let first = db
                .write(soon(), |tx| audit::append(tx, &event("one")))
                .unwrap();
            let failed: Result<(), StoreError> = db.write(soon(), |tx| {
                audit::append(tx, &event("two"))?;
                Err(StoreError::Aborted("refused".into()))
            });
            assert!(failed.is_err(), "{engine:?}");
            let head = db.read(soon(), audit::head).unwrap();
            assert_eq!(head, Some((first.seq, first.hash.clone())), "{engine:?}");

            let late: Result<(), StoreError> =
                db.write(Instant::now() - Duration::from_millis(1), |_| Ok(()));
            assert_eq!(
                late.unwrap_err().fault(),
                Some(Fault::DeadlinePassed),
                "{engine:?}"
            );
            assert_eq!(db.health().status().failing(), Some(Fault::DeadlinePassed));
            db.write(soon(), |tx| audit::append(tx, &event("three")))
                .unwrap();
            assert_eq!(db.health().status().failing(), None, "{engine:?}");
            let count: i64 = db
                .read(soon(), |c| {
                    c.query_one("SELECT count(*) FROM audit_events", &[], |r| r.get(0))
                })
                .unwrap();
            assert_eq!(count, 2, "{engine:?}");
        }
    }

    // issue 15: a session that only read leaves a red write health red on
    // both engines (a standby after failover answers reads but refuses
    // writes); a session that wrote turns it green.
    #[test]
    fn only_a_session_that_wrote_turns_write_health_green() {
        for (db, _dir) in databases() {
            let engine = db.engine();
            let late: Result<(), StoreError> =
                db.write(Instant::now() - Duration::from_millis(1), |_| Ok(()));
            assert!(late.is_err(), "{engine:?}");
            let read: Result<Option<(i64, String)>, StoreError> =
                db.session(soon(), |conn| audit::head(&*conn));
            read.unwrap();
            assert_eq!(
                db.health().status().failing(),
                Some(Fault::DeadlinePassed),
                "{engine:?}: a read-only session proves nothing about writes"
            );
            let wrote: Result<_, StoreError> = db.session(soon(), |conn| {
                conn.write(|tx| audit::append(tx, &event("wrote")))
            });
            wrote.unwrap();
            assert_eq!(db.health().status().failing(), None, "{engine:?}");
        }
    }

    // issue 15: a PostgreSQL store behind this build's schema is refused
    // with a pointer to `tpa-ca migrate`, not used half-migrated.
    #[test]
    fn an_unmigrated_postgres_store_is_refused() {
        let db = crate::store::postgres_server::PgServer::shared().database();
        let options = PgOptions {
            url: db.url,
            password: Some(db.password),
            ca_file: None,
        };
        let e = Database::open_postgres(options, 1).unwrap_err();
        assert!(e.to_string().contains("tpa-ca migrate"), "{e}");
    }
}
