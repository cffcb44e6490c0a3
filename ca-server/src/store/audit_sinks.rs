//! Audit sink cursors (`audit_sink_cursors`): each sink's position in the
//! append-only audit trail, which is the sinks' outbox. Delivery is in `seq`
//! order, at least once; a failure only delays it.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::sql::Sql;
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
/// trail, so it receives the whole history once. One statement, so it
/// commits on its own on either engine (and two replicas registering the
/// same sink at once leave one cursor).
pub fn register(conn: &impl Sql, sink: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_sink_cursors (sink, delivered_through) VALUES (?1, 0)
         ON CONFLICT (sink) DO NOTHING",
        &[&sink],
    )?;
    Ok(())
}

/// The cursor of `sink`, if it is registered.
pub fn cursor(conn: &impl Sql, sink: &str) -> Result<Option<Cursor>, StoreError> {
    conn.query_opt(
        "SELECT delivered_through, attempts, next_attempt_at FROM audit_sink_cursors WHERE sink = ?1",
        &[&sink],
        |r| {
            Ok(Cursor {
                delivered_through: r.get(0)?,
                attempts: r.get(1)?,
                next_attempt_at: r.get(2)?,
            })
        },
    )
}

/// At most `limit` events after `seq`, in order.
pub fn events_after(conn: &impl Sql, seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
    conn.query_vec(
        &format!(
            "SELECT {} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            super::audit::event_columns("")
        ),
        &[&seq, &i64::from(limit)],
        super::audit::event_from,
    )
}

/// Records that `sink` delivered every event up to `seq` (the cursor only
/// moves forward, so a late acknowledgement from a replica that lost its
/// lease is harmless).
pub fn delivered(conn: &impl Sql, sink: &str, seq: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE audit_sink_cursors
         SET delivered_through = ?2, attempts = 0, next_attempt_at = NULL, last_error = NULL
         WHERE sink = ?1 AND delivered_through < ?2",
        &[&sink, &seq],
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
        "UPDATE audit_sink_cursors SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE sink = ?1",
        &[&sink, &format_time(retry_at), &error],
    )?;
    Ok(())
}

/// How many events `sink` has not delivered yet.
pub fn backlog(conn: &impl Sql, sink: &str) -> Result<i64, StoreError> {
    let backlog: i64 = conn.query_one(
        "SELECT coalesce((SELECT max(seq) FROM audit_events), 0) - coalesce(
         (SELECT delivered_through FROM audit_sink_cursors WHERE sink = ?1), 0)",
        &[&sink],
        |r| r.get(0),
    )?;
    Ok(backlog.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit;
    use crate::store::engine::test_engines;
    use tpa_core::audit::{NewEvent, Outcome};

    fn event(n: u32) -> NewEvent {
        NewEvent {
            time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            actor: "admin:root".into(),
            source: "cli".into(),
            action: "test".into(),
            object: format!("thing:{n}"),
            outcome: Outcome::Success,
            reason: "test".into(),
            details: serde_json::json!({}),
        }
    }

    // issue 15: a new sink starts at the beginning of the trail, reads it in
    // order in bounded batches, and its cursor only moves forward; failures
    // are counted until a delivery; on both engines.
    #[test]
    fn a_sink_reads_the_trail_in_order_once() {
        for (engine, mut conn, _dir) in test_engines() {
            let events = conn
                .write(|tx| {
                    (1..=3)
                        .map(|n| audit::append(tx, &event(n)))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            assert_eq!(cursor(&conn, "siem").unwrap(), None, "{engine:?}");
            assert_eq!(
                backlog(&conn, "siem").unwrap(),
                3,
                "{engine:?}: unregistered"
            );
            register(&conn, "siem").unwrap();
            register(&conn, "siem").unwrap();
            let start = cursor(&conn, "siem").unwrap().unwrap();
            assert_eq!(start.delivered_through, 0, "{engine:?}");
            assert_eq!(
                events_after(&conn, 0, 2).unwrap(),
                events[..2].to_vec(),
                "{engine:?}"
            );
            assert_eq!(
                events_after(&conn, 2, 10).unwrap(),
                events[2..].to_vec(),
                "{engine:?}"
            );

            let retry = Utc::now();
            failed(&conn, "siem", &"x".repeat(600), retry).unwrap();
            failed(&conn, "siem", "503", retry).unwrap();
            let failing = cursor(&conn, "siem").unwrap().unwrap();
            assert_eq!(
                (failing.attempts, failing.next_attempt_at),
                (2, Some(format_time(retry))),
                "{engine:?}"
            );
            delivered(&conn, "siem", 3).unwrap();
            delivered(&conn, "siem", 2).unwrap();
            assert_eq!(
                cursor(&conn, "siem").unwrap().unwrap(),
                Cursor {
                    delivered_through: 3,
                    attempts: 0,
                    next_attempt_at: None
                },
                "{engine:?}: the cursor never goes back"
            );
            assert_eq!(backlog(&conn, "siem").unwrap(), 0, "{engine:?}");
        }
    }
}
