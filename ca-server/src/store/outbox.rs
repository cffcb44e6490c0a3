//! The `outbox` table (notifications written with the change they announce) and
//! each sink's cursor (`outbox_cursors`): delivery is in order, at least once,
//! and an outage only delays it.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::StoreError;
use tpa_core::audit::format_time;

/// A notification waiting for a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Position in the outbox.
    pub id: i64,
    /// Event kind, e.g. `request.approved`.
    pub kind: String,
    /// JSON payload.
    pub payload: String,
    /// Failed attempts at this item so far.
    pub attempts: i64,
    /// Not before this time (after a failure).
    pub next_attempt_at: Option<String>,
}

/// Adds a notification inside the caller's transaction.
pub fn enqueue(
    tx: &Transaction<'_>,
    kind: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO outbox (created_at, kind, payload) VALUES (?1, ?2, ?3)",
        params![format_time(now), kind, payload],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Makes sure `sink` has a cursor. A new sink starts after what is already queued,
/// so adding a webhook does not replay history.
pub fn register_sink(conn: &mut Connection, sink: &str) -> Result<(), StoreError> {
    super::write(conn, |tx| {
        tx.execute(
            "INSERT INTO outbox_cursors (sink, delivered_through)
             SELECT ?1, coalesce(max(id), 0) FROM outbox WHERE true
             ON CONFLICT (sink) DO NOTHING",
            [sink],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// The oldest notification `sink` has not delivered.
pub fn next(conn: &Connection, sink: &str) -> Result<Option<Pending>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT o.id, o.kind, o.payload, c.attempts, c.next_attempt_at
             FROM outbox_cursors c JOIN outbox o ON o.id > c.delivered_through
             WHERE c.sink = ?1 ORDER BY o.id LIMIT 1",
            [sink],
            |r| {
                Ok(Pending {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    payload: r.get(2)?,
                    attempts: r.get(3)?,
                    next_attempt_at: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Records that `sink` delivered item `id`.
pub fn delivered(conn: &mut Connection, sink: &str, id: i64) -> Result<(), StoreError> {
    super::write(conn, |tx| {
        tx.execute(
            "UPDATE outbox_cursors SET delivered_through = ?2, attempts = 0, next_attempt_at = NULL, last_error = NULL
             WHERE sink = ?1 AND delivered_through < ?2",
            params![sink, id],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// Records a failed attempt and when to try again.
pub fn failed(
    conn: &mut Connection,
    sink: &str,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    super::write(conn, |tx| {
        tx.execute(
            "UPDATE outbox_cursors SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE sink = ?1",
            params![sink, format_time(retry_at), error.chars().take(500).collect::<String>()],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// How many notifications `sink` has not delivered.
pub fn backlog(conn: &Connection, sink: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM outbox_cursors c JOIN outbox o ON o.id > c.delivered_through WHERE c.sink = ?1",
        [sink],
        |r| r.get(0),
    )?)
}
