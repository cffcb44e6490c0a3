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
    /// The sink's cursor when this was read: an outcome is recorded only
    /// while the cursor is still there ([`delivered`], [`failed`]).
    pub after: i64,
}

/// Adds a notification inside the caller's transaction.
///
/// Readers move past `o.id > cursor`, so ids must become visible in id
/// order. On PostgreSQL an identity value is allocated at insert, not at
/// commit: a transaction that got id 10 could commit after one that got 11,
/// and a sink that read 11 meanwhile would never read 10. So the insert
/// first takes the audit chain's transaction-scoped lock (reentrant; most
/// of these transactions append to the chain anyway, the window-end and
/// alert ones do not), which serializes every queueing transaction until
/// its commit: ids follow commit order, as audit seqs do. On SQLite the
/// write transaction is already exclusive.
pub fn enqueue(
    tx: &impl Sql,
    kind: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    super::audit::lock_chain(tx)?;
    // The delivery loops of every replica hear of it at commit.
    super::changes::outbox_queued(tx)?;
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
        "SELECT o.id, o.kind, o.payload, c.attempts, c.next_attempt_at, c.delivered_through
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
                after: r.get(5)?,
            })
        },
    )
}

/// Records that `sink` delivered item `id`, read when its cursor was at
/// `after`, by the lease holder `holder`. False (nothing changed) when the
/// cursor moved meanwhile or another replica holds the lease: a late outcome
/// from a replica that lost its lease must not land on a later item.
pub fn delivered(
    conn: &impl Sql,
    sink: &str,
    holder: &str,
    after: i64,
    id: i64,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE outbox_cursors SET delivered_through = ?2, attempts = 0, next_attempt_at = NULL, last_error = NULL
         WHERE sink = ?1 AND delivered_through = ?3 AND lease_owner = ?4 AND ?3 < ?2",
        &[&sink, &id, &after, &holder],
    )? == 1)
}

/// Records a failed attempt at the item read when `sink`'s cursor was at
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
        "UPDATE outbox_cursors SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE sink = ?1 AND delivered_through = ?4 AND lease_owner = ?5",
        &[&sink, &format_time(retry_at), &error, &after, &holder],
    )? == 1)
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
            hold(&conn, "hook", "me");
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
            assert!(failed(&conn, "hook", "me", first.after, "503 from the sink", now).unwrap());
            assert_eq!(next(&conn, "hook").unwrap().unwrap().attempts, 1);
            assert!(delivered(&conn, "hook", "me", first.after, b).unwrap());
            assert!(!delivered(&conn, "hook", "me", first.after, a).unwrap());
            assert_eq!(
                next(&conn, "hook").unwrap(),
                None,
                "{engine:?}: the cursor never goes back"
            );
            assert_eq!(backlog(&conn, "hook").unwrap(), 0);
        }
    }

    /// Gives `holder` the lease of `sink` for a day.
    fn hold(conn: &impl Sql, sink: &str, holder: &str) {
        conn.execute(
            "UPDATE outbox_cursors SET lease_owner = ?2, lease_until = '2999-01-01T00:00:00.000000Z' WHERE sink = ?1",
            &[&sink, &holder],
        )
        .unwrap();
    }

    // issue 15: replica A read item 7, stalled and lost its lease; B
    // delivered 7 and failed at 8. A's late outcome of 7 (a failure with a
    // long Retry-After, or a success) must change nothing: not park 8, not
    // move the cursor. The holder's own outcome still lands.
    #[test]
    fn a_late_outcome_from_a_lost_lease_changes_nothing() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            register_sink(&conn, "hook").unwrap();
            let ids: Vec<i64> = (0..2)
                .map(|i| {
                    conn.write(|tx| enqueue(tx, "request.created", &format!("{{\"n\":{i}}}"), now))
                        .unwrap()
                })
                .collect();
            hold(&conn, "hook", "a");
            let seven = next(&conn, "hook").unwrap().unwrap();
            assert_eq!(seven.id, ids[0], "{engine:?}");
            // B takes over, delivers 7 and fails 8 (retry in 1 s).
            hold(&conn, "hook", "b");
            let b_seven = next(&conn, "hook").unwrap().unwrap();
            assert!(delivered(&conn, "hook", "b", b_seven.after, b_seven.id).unwrap());
            let eight = next(&conn, "hook").unwrap().unwrap();
            let soon = now + chrono::TimeDelta::seconds(1);
            assert!(failed(&conn, "hook", "b", eight.after, "HTTP 503", soon).unwrap());
            // A's late failure of 7 (Retry-After 3600) and a late success.
            let late = now + chrono::TimeDelta::seconds(3600);
            assert!(
                !failed(&conn, "hook", "a", seven.after, "HTTP 429", late).unwrap(),
                "{engine:?}"
            );
            assert!(!delivered(&conn, "hook", "a", seven.after, seven.id).unwrap());
            // Even with the lease back, A's stale cursor matches nothing.
            hold(&conn, "hook", "a");
            assert!(!failed(&conn, "hook", "a", seven.after, "HTTP 429", late).unwrap());
            hold(&conn, "hook", "b");
            let still = next(&conn, "hook").unwrap().unwrap();
            assert_eq!(
                (still.id, still.attempts, still.next_attempt_at),
                (ids[1], 1, Some(format_time(soon))),
                "{engine:?}: item 8 is not parked for an hour"
            );
            // Only the holder records.
            assert!(!failed(&conn, "hook", "a", still.after, "x", late).unwrap());
            assert!(delivered(&conn, "hook", "b", still.after, still.id).unwrap());
            assert_eq!(backlog(&conn, "hook").unwrap(), 0, "{engine:?}");
        }
    }

    // issue 15: on PostgreSQL, a transaction that queued an item and is
    // still open holds back a second one's insert until it commits, so
    // outbox ids become visible in id order: when the later id is visible,
    // every earlier one is too, and a cursor never skips one.
    #[test]
    fn outbox_ids_follow_commit_order_on_postgres() {
        let (options, mut first) = crate::store::pg::test_database();
        let mut second = crate::store::pg::connect(&options).unwrap();
        let now = Utc::now();
        let (queued_tx, queued_rx) = std::sync::mpsc::channel();
        let early = std::thread::spawn(move || {
            first
                .write(|tx| {
                    let id = enqueue(tx, "request.created", "{}", now)?;
                    queued_tx.send(id).unwrap();
                    // Still open while the other transaction queues.
                    std::thread::sleep(std::time::Duration::from_millis(800));
                    Ok::<_, StoreError>(id)
                })
                .unwrap()
        });
        let early_id = queued_rx.recv().unwrap();
        let late_id = second
            .write(|tx| enqueue(tx, "request.approved", "{}", now))
            .unwrap();
        // Right after the later transaction committed: is the earlier id visible?
        let visible: Vec<i64> = second
            .query_vec("SELECT id FROM outbox ORDER BY id", &[], |r| r.get(0))
            .unwrap();
        assert_eq!(early.join().unwrap(), early_id);
        assert!(early_id < late_id);
        assert_eq!(
            visible,
            vec![early_id, late_id],
            "the later id committed only after the earlier one"
        );
    }
}
