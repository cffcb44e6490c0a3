//! Leases on the sink cursors (`outbox_cursors`, `audit_sink_cursors`, and
//! the alert evaluator's `alert_cursor`): with several replicas, the one
//! holding a sink's lease delivers (or evaluates) it; the others leave it
//! alone until the lease runs out (its holder died or hung) and then one of
//! them takes it over.
//!
//! A lease is a conditional update of the cursor row, atomic on both
//! engines, so no transaction stays open across the network delivery (as a
//! `FOR UPDATE SKIP LOCKED` row lock would). Delivery stays at least once:
//! a holder that dies after the sink accepted an item but before the cursor
//! moved has that item delivered again by the next holder.

use super::StoreError;
use super::sql::Sql;

/// Which cursor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursors {
    /// Webhook notifications (`outbox_cursors`).
    Outbox,
    /// Audit sinks (`audit_sink_cursors`).
    AuditSinks,
    /// The alert evaluator (`alert_cursor`, one row): its only sink is
    /// [`ALERT_EVALUATOR`].
    Alerts,
}

/// The sink name of the alert evaluator's lease.
pub const ALERT_EVALUATOR: &str = "alerts:evaluator";

impl Cursors {
    fn take_sql(self) -> &'static str {
        match self {
            Cursors::Outbox => {
                "UPDATE outbox_cursors SET lease_owner = ?2, lease_until = ?4
                 WHERE sink = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until <= ?3 OR lease_until > ?5)"
            }
            Cursors::AuditSinks => {
                "UPDATE audit_sink_cursors SET lease_owner = ?2, lease_until = ?4
                 WHERE sink = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until <= ?3 OR lease_until > ?5)"
            }
            // One row, no sink column: any other name has no cursor here.
            Cursors::Alerts => {
                "UPDATE alert_cursor SET lease_owner = ?2, lease_until = ?4
                 WHERE id = 1 AND ?1 = 'alerts:evaluator'
                   AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until <= ?3 OR lease_until > ?5)"
            }
        }
    }

    fn release_sql(self) -> &'static str {
        match self {
            Cursors::Outbox => {
                "UPDATE outbox_cursors SET lease_owner = NULL, lease_until = NULL
                 WHERE sink = ?1 AND lease_owner = ?2"
            }
            Cursors::AuditSinks => {
                "UPDATE audit_sink_cursors SET lease_owner = NULL, lease_until = NULL
                 WHERE sink = ?1 AND lease_owner = ?2"
            }
            Cursors::Alerts => {
                "UPDATE alert_cursor SET lease_owner = NULL, lease_until = NULL
                 WHERE id = 1 AND ?1 = 'alerts:evaluator' AND lease_owner = ?2"
            }
        }
    }
}

/// Takes or renews the lease of `sink` for `owner` (a replica's id) until
/// `until`, when it is free, already `owner`'s, ran out by `now`, or runs
/// until after `stale` (times RFC 3339 UTC as `format_time` writes them).
/// A lease that far ahead was not written by a clock we can trust (a
/// backwards step of this clock, or a replica far ahead): counting it as
/// held would let a dead holder keep its sinks for as long as the error.
/// False when another replica holds it, or the sink has no cursor.
pub fn take(
    conn: &impl Sql,
    cursors: Cursors,
    sink: &str,
    owner: &str,
    now: &str,
    until: &str,
    stale: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(cursors.take_sql(), &[&sink, &owner, &now, &until, &stale])? == 1)
}

/// Gives the lease up (on shutdown), so another replica need not wait for
/// it to run out. Does nothing when `owner` does not hold it.
pub fn release(
    conn: &impl Sql,
    cursors: Cursors,
    sink: &str,
    owner: &str,
) -> Result<(), StoreError> {
    conn.execute(cursors.release_sql(), &[&sink, &owner])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;

    const T0: &str = "2026-01-01T00:00:00.000000Z";
    const T1: &str = "2026-01-01T00:00:30.000000Z";
    const T2: &str = "2026-01-01T00:01:00.000000Z";
    const FAR: &str = "2999-01-01T00:00:00.000000Z";

    // issue 15: one replica at a time holds a sink; another takes over only
    // when the lease ran out or was released.
    #[test]
    fn one_holder_at_a_time_and_takeover_after_expiry() {
        for (engine, conn, _dir) in test_engines() {
            for (cursors, insert) in [
                (
                    Cursors::Outbox,
                    "INSERT INTO outbox_cursors (sink, delivered_through) VALUES ('hook', 0)",
                ),
                (
                    Cursors::AuditSinks,
                    "INSERT INTO audit_sink_cursors (sink, delivered_through) VALUES ('hook', 0)",
                ),
            ] {
                conn.execute(insert, &[]).unwrap();
                assert!(
                    take(&conn, cursors, "hook", "a", T0, T1, FAR).unwrap(),
                    "{engine:?}"
                );
                assert!(
                    !take(&conn, cursors, "hook", "b", T0, T1, FAR).unwrap(),
                    "{engine:?} {cursors:?}"
                );
                // The holder renews.
                assert!(take(&conn, cursors, "hook", "a", T0, T2, FAR).unwrap());
                // Past the lease, another replica takes over.
                assert!(!take(&conn, cursors, "hook", "b", T1, T2, FAR).unwrap());
                assert!(
                    take(
                        &conn,
                        cursors,
                        "hook",
                        "b",
                        T2,
                        "2026-01-01T00:02:00.000000Z",
                        FAR
                    )
                    .unwrap()
                );
                assert!(!take(&conn, cursors, "hook", "a", T2, T2, FAR).unwrap());
                // A release by a non-holder does nothing; the holder's frees it.
                release(&conn, cursors, "hook", "a").unwrap();
                assert!(!take(&conn, cursors, "hook", "a", T2, T2, FAR).unwrap());
                release(&conn, cursors, "hook", "b").unwrap();
                assert!(
                    take(&conn, cursors, "hook", "a", T2, T2, FAR).unwrap(),
                    "{engine:?}"
                );
                // No cursor, no lease.
                assert!(!take(&conn, cursors, "other", "a", T0, T1, FAR).unwrap());
            }
        }
    }

    // issue 15: a lease running out further ahead than any holder could
    // have written (a backwards clock step, a replica's clock far ahead) is
    // not trusted: another replica takes it; a lease within the bound holds.
    #[test]
    fn a_lease_too_far_ahead_counts_as_expired() {
        for (engine, conn, _dir) in test_engines() {
            for (cursors, insert) in [
                (
                    Cursors::Outbox,
                    "INSERT INTO outbox_cursors (sink, delivered_through, lease_owner, lease_until)
                     VALUES ('hook', 0, 'dead', '2026-01-02T00:00:00.000000Z')",
                ),
                (
                    Cursors::AuditSinks,
                    "INSERT INTO audit_sink_cursors (sink, delivered_through, lease_owner, lease_until)
                     VALUES ('hook', 0, 'dead', '2026-01-02T00:00:00.000000Z')",
                ),
            ] {
                conn.execute(insert, &[]).unwrap();
                // Within the bound (the lease ends before `stale`): held.
                let stale = "2026-01-02T00:00:01.000000Z";
                assert!(!take(&conn, cursors, "hook", "b", T0, T1, stale).unwrap(), "{engine:?}");
                // A day ahead of a bound of one minute: taken over.
                assert!(take(&conn, cursors, "hook", "b", T0, T1, T2).unwrap(), "{engine:?} {cursors:?}");
                // b's own lease, within the bound, holds against a.
                assert!(!take(&conn, cursors, "hook", "a", T0, T1, T2).unwrap());
            }
        }
    }

    // issue 15: the alert evaluator's lease (SQLite; the PostgreSQL alert
    // tables come with their own migration): one holder, takeover after expiry.
    #[test]
    fn the_alert_evaluator_has_one_holder_and_is_taken_over_after_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("tpa.db"), crate::store::Create::IfMissing)
            .unwrap();
        let (c, sink) = (Cursors::Alerts, ALERT_EVALUATOR);
        // No cursor (no rules), no lease.
        assert!(!take(&conn, c, sink, "a", T0, T1, FAR).unwrap());
        crate::store::alerts::register(&conn).unwrap();
        assert!(take(&conn, c, sink, "a", T0, T1, FAR).unwrap());
        assert!(!take(&conn, c, sink, "b", T0, T1, FAR).unwrap());
        assert!(!take(&conn, c, "alerts:other", "a", T0, T1, FAR).unwrap());
        assert!(take(&conn, c, sink, "b", T1, T2, FAR).unwrap());
        assert!(!take(&conn, c, sink, "a", T1, T2, FAR).unwrap());
        release(&conn, c, sink, "a").unwrap();
        assert!(!take(&conn, c, sink, "a", T1, T2, FAR).unwrap());
        release(&conn, c, sink, "b").unwrap();
        assert!(take(&conn, c, sink, "a", T1, T2, FAR).unwrap());
    }
}
