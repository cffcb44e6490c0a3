//! Copying a whole store from one engine to the other (`tpa-ca
//! migrate-store`, SQLite to PostgreSQL): the list of tables in
//! foreign-key order, and the table-by-table copy in batches.
//!
//! [`TABLES`] is the one list; a test holds it equal to the tables of both
//! migrated schemas, so a table added later cannot be left behind. Columns
//! are not listed: they come from the target's catalog, and the source must
//! have the same ones, so a column added on one engine only is a refusal,
//! never a silent loss.

use super::StoreError;
use super::sql::{Engine, Param, Sql};

/// Every table of the store, parents before children (foreign keys), as
/// both engines' migrations create them. Not listed: the engines' own
/// bookkeeping (`tpa_schema`, SQLite's internal tables).
pub const TABLES: &[&str] = &[
    "audit_events",
    "audit_checkpoints",
    "certificates",
    "revocations",
    "revoked_certificates",
    "revoked_ca_keys",
    "krl_state",
    "requests",
    "approvals",
    "break_glass_reviews",
    "automated_approvals",
    "integration_checks",
    "bastion_sessions",
    "bastion_events",
    "outbox",
    "outbox_cursors",
    "window_end_notices",
    "audit_sink_cursors",
    "auth_tokens",
    "oidc_logins",
    "cli_login_codes",
    "device_logins",
    "cli_consents",
    "identity_emails",
    "alert_cursor",
    "alert_windows",
    "heartbeat",
];

/// Rows a migration seeds, which an otherwise empty database holds:
/// `krl_state`'s one row at version 0.
const SEEDED: &str = "krl_state";

/// The most parameters one batched INSERT binds (PostgreSQL's limit is 65,535).
const MAX_PARAMS: usize = 30_000;
/// The most rows one batched INSERT carries (memory stays bounded by this).
const MAX_ROWS: usize = 500;

/// A column's type as the copy reads and binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Bool,
    Text,
}

/// One value in flight.
#[derive(Debug)]
enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
}

impl Value {
    fn param(&self) -> &dyn Param {
        match self {
            Value::Int(v) => v,
            Value::Bool(v) => v,
            Value::Text(v) => v,
        }
    }
}

/// The number of rows of `table` (one of [`TABLES`]).
pub fn count(conn: &impl Sql, table: &str) -> Result<i64, StoreError> {
    conn.query_one(
        &format!("SELECT count(*) FROM {}", known(table)?),
        &[],
        |r| r.get(0),
    )
}

/// The tables of `conn` that hold rows beyond what migrations seed, with
/// their counts; empty for a database fit to copy into.
pub fn non_empty_tables(conn: &impl Sql) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut found = Vec::new();
    for &table in TABLES {
        let rows = if table == SEEDED {
            conn.query_one(
                "SELECT count(*) FROM krl_state WHERE NOT (id = 1 AND version = 0)",
                &[],
                |r| r.get(0),
            )?
        } else {
            count(conn, table)?
        };
        if rows > 0 {
            found.push((table, rows));
        }
    }
    Ok(found)
}

/// The columns of `table` on PostgreSQL, in order, with their kinds.
fn postgres_columns(conn: &impl Sql, table: &str) -> Result<Vec<(String, Kind)>, StoreError> {
    let columns = conn.query_vec(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
        &[&table],
        |r| {
            let name: String = r.get(0)?;
            let kind = match r.get::<String>(1)?.as_str() {
                "bigint" | "integer" => Kind::Int,
                "boolean" => Kind::Bool,
                "text" => Kind::Text,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "{table}.{name} has type {other}, which the copy does not know"
                    )));
                }
            };
            Ok((name, kind))
        },
    )?;
    if columns.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "the PostgreSQL database has no table {table}"
        )));
    }
    Ok(columns)
}

/// The column names of `table` on SQLite, sorted.
fn sqlite_columns(conn: &impl Sql, table: &str) -> Result<Vec<String>, StoreError> {
    let mut names = conn.query_vec("SELECT name FROM pragma_table_info(?1)", &[&table], |r| {
        r.get::<String>(0)
    })?;
    names.sort();
    Ok(names)
}

/// Copies every row of `table` from SQLite `from` into PostgreSQL `to`
/// (inside the caller's transaction), streaming, in batched INSERTs.
/// Returns the rows copied.
pub fn copy_table(from: &impl Sql, to: &impl Sql, table: &str) -> Result<u64, StoreError> {
    let table = known(table)?;
    if from.engine() != Engine::Sqlite || to.engine() != Engine::Postgres {
        return Err(StoreError::Config(
            "the store is copied from SQLite to PostgreSQL".into(),
        ));
    }
    let columns = postgres_columns(to, table)?;
    let mut target: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    target.sort();
    let source = sqlite_columns(from, table)?;
    if source != target {
        return Err(StoreError::Corrupt(format!(
            "table {table} has columns ({}) in SQLite but ({}) in PostgreSQL; both must be at this build's schema",
            source.join(", "),
            target.join(", ")
        )));
    }
    if table == SEEDED {
        // The migration's row gives way to the source's (the caller checked
        // it is the untouched seed).
        to.execute("DELETE FROM krl_state WHERE id = 1 AND version = 0", &[])?;
    }
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    let select = format!("SELECT {} FROM {table}", quoted(&names));
    let per_batch = (MAX_PARAMS / columns.len()).clamp(1, MAX_ROWS);
    let mut batch: Vec<Value> = Vec::with_capacity(per_batch * columns.len());
    let mut copied = 0u64;
    let mut flush = |batch: &mut Vec<Value>| -> Result<(), StoreError> {
        let rows = batch.len() / columns.len();
        if rows == 0 {
            return Ok(());
        }
        let sql = insert_sql(table, &names, rows);
        let params: Vec<&dyn Param> = batch.iter().map(Value::param).collect();
        copied += to.execute(&sql, &params)?;
        batch.clear();
        Ok(())
    };
    from.query_each(&select, &[], &mut |row| {
        for (index, (_, kind)) in columns.iter().enumerate() {
            batch.push(match kind {
                Kind::Int => Value::Int(row.get(index)?),
                Kind::Bool => Value::Bool(row.get(index)?),
                Kind::Text => Value::Text(row.get(index)?),
            });
        }
        if batch.len() >= per_batch * columns.len() {
            flush(&mut batch)?;
        }
        Ok(())
    })?;
    flush(&mut batch)?;
    Ok(copied)
}

/// Moves every identity column's sequence past the largest value copied,
/// so that the next row PostgreSQL numbers does not collide with one.
pub fn reset_identities(tx: &impl Sql) -> Result<Vec<(String, i64)>, StoreError> {
    let identities = tx.query_vec(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND is_identity = 'YES'
         ORDER BY table_name, column_name",
        &[],
        |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
    )?;
    let mut next = Vec::new();
    for (table, column) in identities {
        let table = known(&table)?;
        let value: i64 = tx.query_one(
            &format!(
                "SELECT setval(pg_get_serial_sequence(?1, ?2),
                               coalesce((SELECT max(\"{column}\") FROM {table}), 0) + 1, false)"
            ),
            &[&table, &column],
            |r| r.get(0),
        )?;
        next.push((format!("{table}.{column}"), value));
    }
    Ok(next)
}

fn known(table: &str) -> Result<&'static str, StoreError> {
    TABLES
        .iter()
        .find(|t| **t == table)
        .copied()
        .ok_or_else(|| StoreError::Corrupt(format!("{table} is not a store table")))
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn insert_sql(table: &str, names: &[&str], rows: usize) -> String {
    let width = names.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=width).map(|c| format!("?{}", r * width + c)).collect();
            format!("({})", marks.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES {}",
        quoted(names),
        tuples.join(", ")
    )
}

#[cfg(test)]
mod tests;
