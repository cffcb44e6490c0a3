//! The engine chosen at run time: a connection and a write transaction of
//! either engine as one type, so that the workflow writes one closure
//! (`conn.write(|tx| …)`) and the store functions it calls run on whichever
//! engine the configuration names.

use rusqlite::TransactionBehavior;

use super::StoreError;
use super::pg::{PgConn, PgTx};
use super::sql::{Engine, Param, Row, Sql};

/// A connection to the configured database.
#[derive(Debug)]
pub enum Conn {
    /// SQLite (the embedded default).
    Sqlite(rusqlite::Connection),
    /// PostgreSQL (several replicas); boxed, as the client and its runtime
    /// are much larger than a SQLite handle.
    Postgres(Box<PgConn>),
}

/// An open write transaction on a [`Conn`].
#[derive(Debug)]
pub enum Tx<'c> {
    /// `BEGIN IMMEDIATE` on SQLite.
    Sqlite(rusqlite::Transaction<'c>),
    /// `BEGIN` (READ COMMITTED) on PostgreSQL.
    Postgres(PgTx<'c>),
}

impl Conn {
    /// Runs `f` in a write transaction and commits when it returns `Ok`;
    /// rolls back otherwise.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = match self {
            Conn::Sqlite(conn) => Tx::Sqlite(
                conn.transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?,
            ),
            Conn::Postgres(conn) => Tx::Postgres(conn.begin()?),
        };
        let value = f(&tx)?;
        match tx {
            Tx::Sqlite(tx) => tx.commit().map_err(StoreError::from)?,
            Tx::Postgres(tx) => tx.commit()?,
        }
        Ok(value)
    }
}

macro_rules! delegate_sql {
    ($ty:ty, $sqlite:path, $postgres:path) => {
        impl Sql for $ty {
            fn engine(&self) -> Engine {
                match self {
                    $sqlite(_) => Engine::Sqlite,
                    $postgres(_) => Engine::Postgres,
                }
            }
            fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
                match self {
                    $sqlite(c) => Sql::execute(c, sql, params),
                    $postgres(c) => Sql::execute(c, sql, params),
                }
            }
            fn query_each(
                &self,
                sql: &str,
                params: &[&dyn Param],
                f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
            ) -> Result<(), StoreError> {
                match self {
                    $sqlite(c) => Sql::query_each(c, sql, params, f),
                    $postgres(c) => Sql::query_each(c, sql, params, f),
                }
            }
            fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
                match self {
                    $sqlite(c) => Sql::execute_batch(c, sql),
                    $postgres(c) => Sql::execute_batch(c, sql),
                }
            }
        }
    };
}

delegate_sql!(Conn, Conn::Sqlite, Conn::Postgres);
delegate_sql!(Tx<'_>, Tx::Sqlite, Tx::Postgres);

/// Connections to fresh, migrated databases of both engines, for tests that
/// must hold on each: SQLite in a temporary directory (kept alive by the
/// returned guard) and PostgreSQL on the test process's server.
#[cfg(test)]
pub(crate) fn test_engines() -> Vec<(Engine, Conn, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = super::open(&dir.path().join("t.db"), super::Create::IfMissing)
        .expect("open a SQLite test database");
    let (_, pg) = super::pg::test_database();
    vec![
        (Engine::Sqlite, Conn::Sqlite(sqlite), Some(dir)),
        (Engine::Postgres, Conn::Postgres(Box::new(pg)), None),
    ]
}
