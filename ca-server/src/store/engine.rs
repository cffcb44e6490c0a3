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
    /// `BEGIN` (READ COMMITTED) and the writers' lock on PostgreSQL
    /// ([`PgConn::begin_write`]).
    Postgres(PgTx<'c>),
}

impl Conn {
    /// Rows changed on this connection since it opened (both engines), to
    /// tell a call that wrote from one that only read.
    pub fn total_changes(&self) -> u64 {
        match self {
            Conn::Sqlite(conn) => conn.total_changes(),
            Conn::Postgres(conn) => conn.total_changes(),
        }
    }

    /// Runs `f` in a write transaction and commits when it returns `Ok`;
    /// rolls back otherwise.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Conn::Sqlite(conn) => write_sqlite(conn, f),
            Conn::Postgres(conn) => {
                let tx = Tx::Postgres(conn.begin_write()?);
                let value = f(&tx)?;
                if let Tx::Postgres(tx) = tx {
                    tx.commit()?;
                }
                Ok(value)
            }
        }
    }
}

/// A connection that opens write transactions whose closures get the
/// engine-neutral [`Tx`]: the SQLite writer's rusqlite connection, a [`Conn`]
/// of either engine, or the [`Session`] the workflow is handed. Use cases
/// that own their transaction take `&mut impl Transact`.
pub trait Transact: Sql {
    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE` on SQLite,
    /// `BEGIN` and the writers' lock on PostgreSQL) and commits when it returns `Ok`; rolls back
    /// otherwise.
    fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E>;
}

impl Transact for rusqlite::Connection {
    fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        write_sqlite(self, f)
    }
}

impl Transact for Conn {
    fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        Conn::write(self, f)
    }
}

/// Runs `f` on each of `items` in write transactions of at most `chunk`
/// items (one commit, and on SQLite one sync, per chunk rather than per
/// item, so a background pass holds the writer briefly), each item in a
/// savepoint of its own: the first item that fails is rolled back alone,
/// the items before it in its chunk still commit, and the pass ends with
/// its error, as with one transaction per item. Returns how many items `f`
/// counted (returned `true` for).
pub fn write_chunks<I, E: From<StoreError>>(
    conn: &mut impl Transact,
    items: &[I],
    chunk: usize,
    mut f: impl FnMut(&Tx<'_>, &I) -> Result<bool, E>,
) -> Result<usize, E> {
    let mut count = 0;
    for part in items.chunks(chunk.max(1)) {
        let (done, failed) = conn.write(|tx| {
            let mut done = 0;
            for item in part {
                match tx.savepoint(|tx| f(tx, item))? {
                    Ok(counted) => done += usize::from(counted),
                    Err(e) => return Ok::<_, E>((done, Some(e))),
                }
            }
            Ok((done, None))
        })?;
        count += done;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(count)
}

/// The connection a workflow step runs on: the SQLite writer's (held for
/// the step) or a pooled PostgreSQL one.
#[derive(Debug)]
pub enum Session<'c> {
    /// The SQLite writer connection.
    Sqlite(&'c mut rusqlite::Connection),
    /// A pooled connection of the configured engine.
    Pooled(&'c mut Conn),
}

impl Transact for Session<'_> {
    fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Session::Sqlite(c) => write_sqlite(c, f),
            Session::Pooled(c) => c.write(f),
        }
    }
}

/// [`Conn::write`] on a rusqlite connection held elsewhere (the SQLite
/// writer's): `BEGIN IMMEDIATE`, `f`, commit.
pub(crate) fn write_sqlite<T, E: From<StoreError>>(
    conn: &mut rusqlite::Connection,
    f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let tx = Tx::Sqlite(
        conn.transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?,
    );
    let value = f(&tx)?;
    if let Tx::Sqlite(tx) = tx {
        tx.commit().map_err(StoreError::from)?;
    }
    Ok(value)
}

impl Tx<'_> {
    /// Runs `f` inside a savepoint of this transaction: an `Err` from `f`
    /// rolls back only `f`'s writes (see [`sql::savepoint`](super::sql::savepoint)).
    pub fn savepoint<T, E>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<Result<T, E>, StoreError> {
        super::sql::savepoint(self, f)
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
            fn holds_writers_lock(&self) -> bool {
                match self {
                    $sqlite(c) => Sql::holds_writers_lock(c),
                    $postgres(c) => Sql::holds_writers_lock(c),
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

impl Sql for Session<'_> {
    fn engine(&self) -> Engine {
        match self {
            Session::Sqlite(_) => Engine::Sqlite,
            Session::Pooled(c) => Sql::engine(&**c),
        }
    }
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        match self {
            Session::Sqlite(c) => Sql::execute(&**c, sql, params),
            Session::Pooled(c) => Sql::execute(&**c, sql, params),
        }
    }
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Session::Sqlite(c) => Sql::query_each(&**c, sql, params, f),
            Session::Pooled(c) => Sql::query_each(&**c, sql, params, f),
        }
    }
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Session::Sqlite(c) => Sql::execute_batch(&**c, sql),
            Session::Pooled(c) => Sql::execute_batch(&**c, sql),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn add(tx: &impl Sql, sink: &str) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO outbox_cursors (sink, delivered_through) VALUES (?1, 0)",
            &[&sink],
        )
        .map(drop)
    }

    fn sinks(conn: &impl Sql) -> Vec<String> {
        conn.query_vec("SELECT sink FROM outbox_cursors ORDER BY sink", &[], |r| {
            r.get(0)
        })
        .unwrap()
    }

    // issue 15: a job that fails inside its savepoint (here on a duplicate
    // key, which on PostgreSQL aborts the transaction until the savepoint is
    // rolled back) loses only its own writes; the jobs before and after it
    // and the outer transaction's writes commit, on both engines. Savepoints
    // nest.
    #[test]
    fn an_inner_failure_rolls_back_only_the_inner_writes() {
        for (engine, mut conn, _dir) in test_engines() {
            let outcomes = conn
                .write(|tx| {
                    add(tx, "outer")?;
                    let kept = tx.savepoint(|tx| add(tx, "kept"))?;
                    let failed = tx.savepoint(|tx| {
                        add(tx, "lost")?;
                        add(tx, "outer")
                    })?;
                    let nested = tx.savepoint(|tx| {
                        add(tx, "nested-outer")?;
                        let inner = tx.savepoint(|tx| {
                            add(tx, "nested-lost")?;
                            Err::<(), _>(StoreError::Aborted("inner job refused".into()))
                        })?;
                        assert!(inner.is_err());
                        Ok::<_, StoreError>(())
                    })?;
                    add(tx, "after")?;
                    Ok::<_, StoreError>((kept.is_ok(), failed.is_err(), nested.is_ok()))
                })
                .unwrap();
            assert_eq!(outcomes, (true, true, true), "{engine:?}");
            assert_eq!(
                sinks(&conn),
                ["after", "kept", "nested-outer", "outer"],
                "{engine:?}"
            );

            // The outer transaction failing takes every savepoint's writes with it.
            let rolled_back: Result<(), StoreError> = conn.write(|tx| {
                tx.savepoint(|tx| add(tx, "gone"))??;
                Err(StoreError::Aborted("whole batch".into()))
            });
            assert!(rolled_back.is_err());
            assert!(!sinks(&conn).contains(&"gone".to_owned()), "{engine:?}");
        }
    }

    // issue 15: a background pass writes its items in chunks (one commit
    // per chunk), each item in its own savepoint: on both engines every
    // item before the first failure commits, even in the failing item's
    // chunk, the failing one and those after it do not, the count covers
    // what committed, and the pass ends with the item's error.
    #[test]
    fn chunked_writes_commit_every_item_before_the_first_failure() {
        for (engine, mut conn, _dir) in test_engines() {
            let items: Vec<usize> = (0..12).collect();
            let counted = write_chunks(&mut conn, &items, 5, |tx, i| {
                add(tx, &format!("s{i:02}"))?;
                Ok::<_, StoreError>(i % 2 == 0)
            })
            .unwrap();
            assert_eq!(counted, 6, "{engine:?}");
            assert_eq!(sinks(&conn).len(), 12, "{engine:?}");

            let items: Vec<usize> = (0..12).collect();
            let failed = write_chunks(&mut conn, &items, 5, |tx, i| {
                add(tx, &format!("t{i:02}"))?;
                if *i == 7 {
                    return Err(StoreError::Aborted("item 7 refused".into()));
                }
                Ok(true)
            });
            assert!(
                matches!(failed, Err(StoreError::Aborted(ref m)) if m == "item 7 refused"),
                "{engine:?}: {failed:?}"
            );
            let kept: Vec<String> = sinks(&conn)
                .into_iter()
                .filter(|s| s.starts_with('t'))
                .collect();
            let expected: Vec<String> = (0..7).map(|i| format!("t{i:02}")).collect();
            assert_eq!(kept, expected, "{engine:?}");
        }
    }

    // issue 15: the same on a bare PostgreSQL transaction (`PgTx`).
    #[test]
    fn a_postgres_transaction_survives_a_failed_savepoint() {
        let (_, mut conn) = super::super::pg::test_database();
        conn.write(|tx| {
            add(tx, "a")?;
            let failed = tx.savepoint(|tx| add(tx, "a"))?;
            assert!(failed.is_err());
            add(tx, "b")
        })
        .unwrap();
        assert_eq!(sinks(&conn), ["a", "b"]);
    }
}
