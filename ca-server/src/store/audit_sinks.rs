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

/// Records that `sink` delivered every event up to `seq`, read when its
/// cursor was at `after`, by the lease holder `holder`. False (nothing
/// changed) when the cursor moved meanwhile or another replica holds the
/// lease: a late outcome from a replica that lost its lease must not land
/// on a later batch.
pub fn delivered(
    conn: &impl Sql,
    sink: &str,
    holder: &str,
    after: i64,
    seq: i64,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE audit_sink_cursors
         SET delivered_through = ?2, attempts = 0, next_attempt_at = NULL, last_error = NULL
         WHERE sink = ?1 AND delivered_through = ?3 AND lease_owner = ?4 AND ?3 < ?2",
        &[&sink, &seq, &after, &holder],
    )? == 1)
}

/// Records a failed attempt at the batch read when `sink`'s cursor was at
/// `after`, and when to try again; false (nothing changed) as for [`delivered`].
pub fn failed(
    conn: &impl Sql,
    sink: &str,
    holder: &str,
    after: i64,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let error: String = error.chars().take(500).collect();
    Ok(conn.execute(
        "UPDATE audit_sink_cursors SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE sink = ?1 AND delivered_through = ?4 AND lease_owner = ?5",
        &[&sink, &format_time(retry_at), &error, &after, &holder],
    )? == 1)
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
            hold(&conn, "me");
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
            assert!(failed(&conn, "siem", "me", 0, &"x".repeat(600), retry).unwrap());
            assert!(failed(&conn, "siem", "me", 0, "503", retry).unwrap());
            let failing = cursor(&conn, "siem").unwrap().unwrap();
            assert_eq!(
                (failing.attempts, failing.next_attempt_at),
                (2, Some(format_time(retry))),
                "{engine:?}"
            );
            assert!(delivered(&conn, "siem", "me", 0, 3).unwrap());
            assert!(!delivered(&conn, "siem", "me", 0, 2).unwrap());
            assert!(!delivered(&conn, "siem", "me", 3, 2).unwrap());
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

    /// Gives `holder` the lease of the sink `siem` for a long time.
    fn hold(conn: &impl Sql, holder: &str) {
        conn.execute(
            "UPDATE audit_sink_cursors SET lease_owner = ?1, lease_until = '2999-01-01T00:00:00.000000Z' WHERE sink = 'siem'",
            &[&holder],
        )
        .unwrap();
    }

    // issue 15: a replica that lost its lease (or whose cursor moved on)
    // records nothing: its late failure does not park the next batch, its
    // late success does not move the cursor.
    #[test]
    fn a_late_outcome_from_a_lost_lease_changes_nothing() {
        for (engine, mut conn, _dir) in test_engines() {
            conn.write(|tx| (1..=4).try_for_each(|n| audit::append(tx, &event(n)).map(drop)))
                .unwrap();
            register(&conn, "siem").unwrap();
            hold(&conn, "a");
            let a_read = cursor(&conn, "siem").unwrap().unwrap().delivered_through;
            hold(&conn, "b");
            assert!(delivered(&conn, "siem", "b", a_read, 2).unwrap());
            let soon = Utc::now();
            assert!(failed(&conn, "siem", "b", 2, "503", soon).unwrap());
            let late = soon + chrono::TimeDelta::seconds(3600);
            assert!(
                !failed(&conn, "siem", "a", a_read, "429", late).unwrap(),
                "{engine:?}"
            );
            assert!(!delivered(&conn, "siem", "a", a_read, 1).unwrap());
            hold(&conn, "a");
            assert!(!failed(&conn, "siem", "a", a_read, "429", late).unwrap());
            assert_eq!(
                cursor(&conn, "siem").unwrap().unwrap(),
                Cursor {
                    delivered_through: 2,
                    attempts: 1,
                    next_attempt_at: Some(format_time(soon))
                },
                "{engine:?}"
            );
        }
    }
}
