//! [`TestConn`]: a test's connection to its data directory's store, on
//! whichever engine the run uses (issue 15), usable from sync and async
//! tests alike.
//!
//! The PostgreSQL client is synchronous and runs a small tokio runtime of
//! its own, which panics when called on a thread already inside a runtime
//! (every `#[tokio::test]`). So a PostgreSQL statement run from such a
//! thread moves the connection to a scoped thread of its own for the
//! statement and back, with the rows cloned over; the test reads the same
//! `Sql` calls either way (`store::requests::get(&conn, …)`).

use std::cell::RefCell;

use ca_server::store::StoreError;
use ca_server::store::engine::{Conn, Transact, Tx};
use ca_server::store::sql::{Column, Engine, Param, Row, Sql};

/// A connection to a test's store, implementing [`Sql`] (statements with
/// `?N` placeholders, the store's table functions) and [`Transact`] (the
/// workflow's use cases) on both engines.
#[derive(Debug)]
pub struct TestConn {
    /// `None` only while a statement runs on the helper thread.
    conn: RefCell<Option<Conn>>,
}

impl TestConn {
    /// Wraps a connection of either engine.
    pub fn new(conn: Conn) -> Self {
        Self {
            conn: RefCell::new(Some(conn)),
        }
    }

    /// The first column of the one row `sql` returns (a test's plain read:
    /// `conn.one::<i64>("SELECT count(*) FROM requests WHERE state = ?1", &[&"issued"])`).
    pub fn one<T: Column>(&self, sql: &str, params: &[&dyn Param]) -> T {
        self.query_one(sql, params, |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of the first row `sql` returns, if any.
    pub fn opt<T: Column>(&self, sql: &str, params: &[&dyn Param]) -> Option<T> {
        self.query_opt(sql, params, |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The first column of every row `sql` returns, in order.
    pub fn column<T: Column>(&self, sql: &str, params: &[&dyn Param]) -> Vec<T> {
        self.query_vec(sql, params, |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement that must succeed; the number of rows it changed.
    pub fn exec(&self, sql: &str, params: &[&dyn Param]) -> u64 {
        self.execute(sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs `;`-separated statements that must succeed.
    pub fn batch(&self, sql: &str) {
        self.execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The SQL expression for the text of `key` in the JSON text column
    /// `column`, in this engine's dialect (`json_extract` on SQLite, `->>`
    /// on PostgreSQL).
    pub fn json_text(&self, column: &str, key: &str) -> String {
        match self.engine() {
            Engine::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Engine::Postgres => format!("({column}::jsonb ->> '{key}')"),
        }
    }

    /// Makes each `op` (`INSERT`, `UPDATE` or `DELETE`) on `table` for
    /// which `when` holds (an SQL condition over `NEW`/`OLD`, written the
    /// same in both dialects) fail with `message`: a storage failure
    /// injected with a trigger named `name`, in each engine's own syntax.
    pub fn fail_on(&self, name: &str, op: &str, table: &str, when: &str, message: &str) {
        self.batch(&match self.engine() {
            Engine::Sqlite => format!(
                "CREATE TRIGGER {name} BEFORE {op} ON {table} WHEN {when}
                 BEGIN SELECT RAISE(ABORT, '{message}'); END;"
            ),
            Engine::Postgres => format!(
                "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $f$
                 BEGIN IF {when} THEN RAISE EXCEPTION '{message}'; END IF;
                 RETURN coalesce(NEW, OLD); END $f$;
                 CREATE TRIGGER {name} BEFORE {op} ON {table}
                 FOR EACH ROW EXECUTE FUNCTION {name}();"
            ),
        });
    }

    /// Removes the failure [`TestConn::fail_on`] put on `table`.
    pub fn stop_failing(&self, name: &str, table: &str) {
        self.batch(&match self.engine() {
            Engine::Sqlite => format!("DROP TRIGGER {name}"),
            Engine::Postgres => {
                format!("DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}()")
            }
        });
    }

    /// Whether a statement must run on a thread of its own: PostgreSQL
    /// called from inside a tokio runtime.
    fn must_hop(&self) -> bool {
        matches!(self.conn.borrow().as_ref(), Some(Conn::Postgres(_))) && in_runtime()
    }

    /// Runs `f` on the connection, here.
    fn here<T>(&self, f: impl FnOnce(&Conn) -> T) -> T {
        f(self.conn.borrow().as_ref().expect("connection present"))
    }

    /// Runs `f` on a scoped thread of its own: the connection goes there
    /// and comes back.
    fn hop<T: Send>(&self, f: impl FnOnce(&Conn) -> T + Send) -> T {
        let mut slot = self.conn.borrow_mut();
        let conn = slot.take().expect("connection present");
        let (conn, out) = std::thread::scope(|s| {
            s.spawn(move || {
                let out = f(&conn);
                (conn, out)
            })
            .join()
            .expect("the PostgreSQL statement thread")
        });
        *slot = Some(conn);
        out
    }
}

impl Drop for TestConn {
    /// Closing a PostgreSQL client blocks on its own runtime: inside a tokio
    /// runtime that happens on a thread of its own.
    fn drop(&mut self) {
        if self.must_hop() {
            let conn = self.conn.get_mut().take();
            std::thread::scope(|s| {
                s.spawn(move || drop(conn));
            });
        }
    }
}

/// Whether this thread is inside a tokio runtime (where the synchronous
/// PostgreSQL client must not block).
fn in_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// A PostgreSQL parameter that crosses to the statement thread (`&dyn
/// Param` is not `Sync`; its PostgreSQL view is).
struct PgParam<'a>(&'a (dyn postgres::types::ToSql + Sync));

impl Param for PgParam<'_> {
    fn as_sqlite(&self) -> &dyn rusqlite::ToSql {
        unreachable!("a PgParam is only bound on PostgreSQL")
    }
    fn as_postgres(&self) -> &(dyn postgres::types::ToSql + Sync) {
        self.0
    }
}

fn pg_params<'a>(params: &[&'a dyn Param]) -> Vec<PgParam<'a>> {
    params.iter().map(|p| PgParam(p.as_postgres())).collect()
}

fn as_params<'a>(params: &'a [PgParam<'_>]) -> Vec<&'a dyn Param> {
    params.iter().map(|p| p as &dyn Param).collect()
}

impl Sql for TestConn {
    fn engine(&self) -> Engine {
        self.here(|c| c.engine())
    }

    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        if !self.must_hop() {
            return self.here(|c| c.execute(sql, params));
        }
        let params = pg_params(params);
        self.hop(move |c| c.execute(sql, &as_params(&params)))
    }

    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if !self.must_hop() {
            return self.here(|c| c.query_each(sql, params, f));
        }
        let params = pg_params(params);
        let rows = self.hop(move |c| {
            let mut rows = Vec::new();
            c.query_each(sql, &as_params(&params), &mut |row| {
                if let Row::Postgres(row) = row {
                    rows.push((*row).clone());
                }
                Ok(())
            })
            .map(|()| rows)
        })?;
        rows.iter().try_for_each(|row| f(&Row::Postgres(row)))
    }

    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        if !self.must_hop() {
            return self.here(|c| c.execute_batch(sql));
        }
        self.hop(|c| c.execute_batch(sql))
    }
}

/// A write transaction runs here: on a thread inside a tokio runtime the
/// PostgreSQL client panics ("cannot start a runtime from within a
/// runtime"), so async tests run their writes in
/// [`DataDir::blocking`](crate::DataDir::blocking) or `spawn_blocking`.
impl Transact for TestConn {
    fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.conn
            .get_mut()
            .as_mut()
            .expect("connection present")
            .write(f)
    }
}
