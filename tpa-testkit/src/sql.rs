//! Plain-SQL views of a test database: row counts and the audit trail as rows.

/// Number of rows in `table`.
pub fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// An audit row, read with plain SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs, reason = "the columns of audit_events")]
pub struct AuditRow {
    pub seq: i64,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub outcome: String,
    pub reason: String,
    pub details: String,
}

/// Every audit row in seq order.
pub fn audit_rows(conn: &rusqlite::Connection) -> Vec<AuditRow> {
    let mut stmt = conn
        .prepare(
            "SELECT seq, actor, action, object, outcome, reason, details FROM audit_events ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(AuditRow {
            seq: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            object: r.get(3)?,
            outcome: r.get(4)?,
            reason: r.get(5)?,
            details: r.get(6)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}
