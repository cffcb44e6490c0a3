//! One statement API over both engines: the store's table files write one
//! SQL text and bind one parameter list, and run it on a SQLite connection or
//! transaction or on a PostgreSQL one alike.
//!
//! The SQL is written in the dialect both engines share, with SQLite's `?N`
//! placeholders; for PostgreSQL they are rewritten to `$N` once per statement
//! text (outside string literals and quoted names). A value crosses either
//! engine through [`Param`] and [`Column`], which are the types both drivers
//! convert (`i64`, `String`, `&str`, `bool`, `Option<…>`, `Vec<u8>`).

use std::borrow::Cow;

use super::StoreError;

/// Which database engine runs a statement (for the rare statement whose text
/// has to differ, such as a lock that SQLite gets from `BEGIN IMMEDIATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The embedded single-process store.
    Sqlite,
    /// The shared store of several replicas.
    Postgres,
}

/// A value both drivers can bind.
pub trait Param {
    /// The value as rusqlite binds it.
    fn as_sqlite(&self) -> &dyn rusqlite::ToSql;
    /// The value as the PostgreSQL client binds it.
    fn as_postgres(&self) -> &(dyn postgres::types::ToSql + Sync);
}

impl<T: rusqlite::ToSql + postgres::types::ToSql + Sync> Param for T {
    fn as_sqlite(&self) -> &dyn rusqlite::ToSql {
        self
    }
    fn as_postgres(&self) -> &(dyn postgres::types::ToSql + Sync) {
        self
    }
}

/// A column type both drivers can read.
pub trait Column: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a> {}
impl<T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>> Column for T {}

/// One result row of either engine.
#[derive(Debug)]
pub enum Row<'r, 's> {
    /// A SQLite row.
    Sqlite(&'r rusqlite::Row<'s>),
    /// A PostgreSQL row.
    Postgres(&'r postgres::Row),
}

impl Row<'_, '_> {
    /// Column `index` (from zero) as `T`.
    pub fn get<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        match self {
            Row::Sqlite(row) => Ok(row.get(index)?),
            Row::Postgres(row) => Ok(row.try_get(index)?),
        }
    }
}

/// Something statements run on: a connection or an open transaction of
/// either engine. Store functions take `&impl Sql`, so the workflow's call
/// sites stay the same whichever engine is behind them.
pub trait Sql {
    /// The engine behind this connection.
    fn engine(&self) -> Engine;

    /// Whether this is a PostgreSQL transaction that already holds the
    /// writers' lock (`PgConn::begin_write`), whose key is the audit chain's:
    /// the chain's lock need not be asked for again (one round trip less per
    /// append).
    fn holds_writers_lock(&self) -> bool {
        false
    }

    /// Runs a statement that returns no rows; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError>;

    /// Runs a query and calls `f` for each row, in order, streaming. `f` must
    /// not run statements on the same connection (PostgreSQL cannot while a
    /// result is being read); doing so is an error, not a deadlock.
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Runs several `;`-separated statements without parameters.
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError>;

    /// The rows of a query, each mapped by `f`.
    fn query_vec<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut f: impl FnMut(&Row<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>
    where
        Self: Sized,
    {
        let mut out = Vec::new();
        self.query_each(sql, params, &mut |row| {
            out.push(f(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row of a query mapped by `f`, or `None` when it has none.
    fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError>
    where
        Self: Sized,
    {
        let mut f = Some(f);
        let mut out = None;
        self.query_each(sql, params, &mut |row| {
            if let Some(f) = f.take() {
                out = Some(f(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The one row a query must return, mapped by `f`.
    fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: impl FnOnce(&Row<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>
    where
        Self: Sized,
    {
        self.query_opt(sql, params, f)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from: {}", first_line(sql))))
    }
}

/// `column` is one of the strings of the JSON array bound at `param` (`?1`):
/// a list of any length in one prepared statement on either engine. On
/// PostgreSQL as `= ANY(ARRAY(…))`, which always probes the column's index;
/// an `IN (subquery)` may be planned, once for the cached statement, as a
/// scan of the whole table.
pub fn in_json_list(engine: Engine, column: &str, param: &str) -> String {
    match engine {
        Engine::Sqlite => format!("{column} IN (SELECT value FROM json_each({param}))"),
        Engine::Postgres => {
            format!("{column} = ANY(ARRAY(SELECT jsonb_array_elements_text({param}::text::jsonb)))")
        }
    }
}

/// Runs `f` inside a savepoint of the transaction `tx` (either engine).
/// When `f` returns `Err`, only its own writes are rolled back and the
/// transaction goes on; on PostgreSQL this also clears the aborted state a
/// failed statement leaves, so the outer transaction can still commit. The
/// outer `Err` means the savepoint itself could not be handled (SQLite
/// already rolled the whole transaction back, the connection broke): the
/// caller must abandon the transaction. Savepoints nest.
pub fn savepoint<S: Sql, T, E>(
    tx: &S,
    f: impl FnOnce(&S) -> Result<T, E>,
) -> Result<Result<T, E>, StoreError> {
    tx.execute("SAVEPOINT tpa_job", &[])?;
    match f(tx) {
        Ok(value) => {
            tx.execute("RELEASE SAVEPOINT tpa_job", &[])?;
            Ok(Ok(value))
        }
        Err(e) => {
            tx.execute("ROLLBACK TO SAVEPOINT tpa_job", &[])?;
            tx.execute("RELEASE SAVEPOINT tpa_job", &[])?;
            Ok(Err(e))
        }
    }
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

fn sqlite_execute(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn Param],
) -> Result<u64, StoreError> {
    let params = params.iter().map(|p| p.as_sqlite());
    let changed = conn
        .prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(params))?;
    Ok(changed as u64)
}

fn sqlite_query_each(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn Param],
    f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let params = params.iter().map(|p| p.as_sqlite());
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        f(&Row::Sqlite(row))?;
    }
    Ok(())
}

impl Sql for rusqlite::Connection {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        sqlite_execute(self, sql, params)
    }
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        sqlite_query_each(self, sql, params, f)
    }
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(rusqlite::Connection::execute_batch(self, sql)?)
    }
}

impl Sql for rusqlite::Transaction<'_> {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        sqlite_execute(self, sql, params)
    }
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        sqlite_query_each(self, sql, params, f)
    }
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(rusqlite::Connection::execute_batch(self, sql)?)
    }
}

impl<S: Sql> Sql for Box<S> {
    fn engine(&self) -> Engine {
        (**self).engine()
    }
    fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        (**self).execute(sql, params)
    }
    fn query_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        f: &mut dyn FnMut(&Row<'_, '_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        (**self).query_each(sql, params, f)
    }
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        (**self).execute_batch(sql)
    }
}

/// Rewrites SQLite's `?N` placeholders to PostgreSQL's `$N`, leaving string
/// literals, quoted names and comments alone. A bare `?` (no number) is left
/// as it is, so that PostgreSQL refuses it rather than binding it wrongly.
pub fn postgres_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sqlite: &str, postgres: &str) {
        assert_eq!(postgres_placeholders(sqlite), postgres);
    }

    #[test]
    fn placeholders_are_rewritten_outside_literals() {
        check("SELECT 1", "SELECT 1");
        check("WHERE a = ?1 AND b = ?12", "WHERE a = $1 AND b = $12");
        check("WHERE a = '?1' AND b = ?2", "WHERE a = '?1' AND b = $2");
        check("WHERE \"?1\" = ?1", "WHERE \"?1\" = $1");
        check("-- ?1 here\nSELECT ?1", "-- ?1 here\nSELECT $1");
        check("SELECT ?", "SELECT ?");
        check("SELECT 'it''s ?1', ?1", "SELECT 'it''s ?1', $1");
    }
}
