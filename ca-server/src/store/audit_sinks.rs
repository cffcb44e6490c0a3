//! Audit sink cursors (`audit_sink_cursors`): each sink's position in the
//! append-only audit trail, which is the sinks' outbox. Delivery is in `seq`
//! order, at least once; a failure only delays it.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::StoreError;
use tpa_core::audit::{Event, format_time};

/// A sink's cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Every event up to this `seq` was delivered.
    pub delivered_through: i64,
    /// Failed attempts at the next batch so far.
    pub attempts: i64,
    /// Not before this time (after a failure), RFC 3339.
    pub next_attempt_at: Option<String>,
}

/// Makes sure `sink` has a cursor. A new sink starts at the beginning of the
/// trail, so it receives the whole history once.
pub fn register(conn: &mut Connection, sink: &str) -> Result<(), StoreError> {
    super::write(conn, |tx| {
        tx.execute(
            "INSERT INTO audit_sink_cursors (sink, delivered_through) VALUES (?1, 0)
             ON CONFLICT (sink) DO NOTHING",
            [sink],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// The cursor of `sink`, if it is registered.
pub fn cursor(conn: &Connection, sink: &str) -> Result<Option<Cursor>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT delivered_through, attempts, next_attempt_at FROM audit_sink_cursors WHERE sink = ?1",
            [sink],
            |r| {
                Ok(Cursor {
                    delivered_through: r.get(0)?,
                    attempts: r.get(1)?,
                    next_attempt_at: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// At most `limit` events after `seq`, in order.
pub fn events_after(conn: &Connection, seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        super::audit::event_columns("")
    ))?;
    let rows = stmt.query_map(params![seq, limit], super::audit::event_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records that `sink` delivered every event up to `seq`.
pub fn delivered(conn: &mut Connection, sink: &str, seq: i64) -> Result<(), StoreError> {
    super::write(conn, |tx| {
        tx.execute(
            "UPDATE audit_sink_cursors
             SET delivered_through = ?2, attempts = 0, next_attempt_at = NULL, last_error = NULL
             WHERE sink = ?1 AND delivered_through < ?2",
            params![sink, seq],
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
            "UPDATE audit_sink_cursors SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
             WHERE sink = ?1",
            params![
                sink,
                format_time(retry_at),
                error.chars().take(500).collect::<String>()
            ],
        )?;
        Ok::<_, StoreError>(())
    })
}

/// How many events `sink` has not delivered yet.
pub fn backlog(conn: &Connection, sink: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT coalesce((SELECT max(seq) FROM audit_events), 0) - coalesce(
             (SELECT delivered_through FROM audit_sink_cursors WHERE sink = ?1), 0)",
            [sink],
            |r| r.get::<_, i64>(0),
        )?
        .max(0))
}
