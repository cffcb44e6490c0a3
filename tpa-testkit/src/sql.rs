//! Plain-SQL views of a test database, on either engine: row counts and
//! the audit trail as rows.

use ca_server::store::sql::Sql;

/// Number of rows in `table`.
pub fn count(conn: &impl Sql, table: &str) -> i64 {
    conn.query_one(&format!("SELECT count(*) FROM {table}"), &[], |r| r.get(0))
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
pub fn audit_rows(conn: &impl Sql) -> Vec<AuditRow> {
    conn.query_vec(
        "SELECT seq, actor, action, object, outcome, reason, details FROM audit_events ORDER BY seq",
        &[],
        |r| {
            Ok(AuditRow {
                seq: r.get(0)?,
                actor: r.get(1)?,
                action: r.get(2)?,
                object: r.get(3)?,
                outcome: r.get(4)?,
                reason: r.get(5)?,
                details: r.get(6)?,
            })
        },
    )
    .unwrap()
}
