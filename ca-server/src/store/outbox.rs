//! The `outbox` table (notifications written with the change they announce) and
//! each sink's cursor (`outbox_cursors`): delivery is in order, at least once,
//! and an outage only delays it.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::sql::Sql;
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
    tx: &impl Sql,
    kind: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    tx.query_one(
        "INSERT INTO outbox (created_at, kind, payload) VALUES (?1, ?2, ?3) RETURNING id",
        &[&format_time(now), &kind, &payload],
        |r| r.get(0),
    )
}

/// Makes sure `sink` has a cursor. A new sink starts after what is already queued,
/// so adding a webhook does not replay history.
/// One statement, so it commits on its own on either engine.
pub fn register_sink(conn: &impl Sql, sink: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO outbox_cursors (sink, delivered_through)
         SELECT ?1, coalesce(max(id), 0) FROM outbox WHERE true
         ON CONFLICT (sink) DO NOTHING",
        &[&sink],
    )?;
    Ok(())
}

/// The oldest notification `sink` has not delivered.
pub fn next(conn: &impl Sql, sink: &str) -> Result<Option<Pending>, StoreError> {
    conn.query_opt(
        "SELECT o.id, o.kind, o.payload, c.attempts, c.next_attempt_at
         FROM outbox_cursors c JOIN outbox o ON o.id > c.delivered_through
         WHERE c.sink = ?1 ORDER BY o.id LIMIT 1",
        &[&sink],
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
}

/// Records that `sink` delivered item `id` (the cursor only moves forward,
/// so a late acknowledgement from a replica that lost its lease is harmless).
pub fn delivered(conn: &impl Sql, sink: &str, id: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox_cursors SET delivered_through = ?2, attempts = 0, next_attempt_at = NULL, last_error = NULL
         WHERE sink = ?1 AND delivered_through < ?2",
        &[&sink, &id],
    )?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub fn failed(
    conn: &impl Sql,
    sink: &str,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let error: String = error.chars().take(500).collect();
    conn.execute(
        "UPDATE outbox_cursors SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE sink = ?1",
        &[&sink, &format_time(retry_at), &error],
    )?;
    Ok(())
}

/// How many notifications `sink` has not delivered.
pub fn backlog(conn: &impl Sql, sink: &str) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT count(*) FROM outbox_cursors c JOIN outbox o ON o.id > c.delivered_through WHERE c.sink = ?1",
        &[&sink],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;

    // issue 15: the outbox keeps order, starts new sinks after what is
    // queued, and moves cursors only forward, on both engines.
    #[test]
    fn outbox_delivers_in_order_on_both_engines() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            let old = conn
                .write(|tx| enqueue(tx, "request.submitted", "{}", now))
                .unwrap();
            register_sink(&conn, "hook").unwrap();
            register_sink(&conn, "hook").unwrap();
            assert_eq!(
                next(&conn, "hook").unwrap(),
                None,
                "{engine:?}: history is not replayed"
            );
            let a = conn
                .write(|tx| enqueue(tx, "request.approved", "{\"n\":1}", now))
                .unwrap();
            let b = conn
                .write(|tx| enqueue(tx, "request.denied", "{\"n\":2}", now))
                .unwrap();
            assert!(old < a && a < b, "{engine:?}");
            assert_eq!(backlog(&conn, "hook").unwrap(), 2);
            let first = next(&conn, "hook").unwrap().unwrap();
            assert_eq!(
                (first.id, first.kind.as_str()),
                (a, "request.approved"),
                "{engine:?}"
            );
            failed(&conn, "hook", "503 from the sink", now).unwrap();
            assert_eq!(next(&conn, "hook").unwrap().unwrap().attempts, 1);
            delivered(&conn, "hook", b).unwrap();
            delivered(&conn, "hook", a).unwrap();
            assert_eq!(
                next(&conn, "hook").unwrap(),
                None,
                "{engine:?}: the cursor never goes back"
            );
            assert_eq!(backlog(&conn, "hook").unwrap(), 0);
        }
    }
}
