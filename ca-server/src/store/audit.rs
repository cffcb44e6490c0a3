//! The `audit_events` table: append (extending the hash chain) and read in order.
//!
//! One linear chain whatever writes: on SQLite the single writer connection
//! serializes appends; on PostgreSQL every appending transaction first takes
//! the chain's transaction-scoped advisory lock, so replicas queue on it and
//! each reads the head its predecessor committed (READ COMMITTED reads the
//! latest commit at each statement). The primary key on `seq` and the unique
//! `hash` make a fork a failed insert, never a second chain.

use super::StoreError;
use super::pg::locks;
use super::sql::{self, Engine, Sql};
use tpa_core::audit::{Event, GENESIS_HASH, NewEvent, canonical_json, format_time};

/// The chain head: the last event's seq and hash, or `None` for an empty trail.
pub fn head(conn: &impl Sql) -> Result<Option<(i64, String)>, StoreError> {
    conn.query_opt(
        "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Takes the audit chain for the rest of the caller's transaction
/// (PostgreSQL; SQLite's writer already holds the whole database).
pub fn lock_chain(tx: &impl Sql) -> Result<(), StoreError> {
    if tx.engine() == Engine::Postgres && !tx.holds_writers_lock() {
        tx.query_one(
            "SELECT pg_advisory_xact_lock(?1)::text",
            &[&locks::AUDIT_CHAIN],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

/// Appends an event inside the caller's write transaction and returns it as stored.
pub fn append(tx: &impl Sql, new: &NewEvent) -> Result<Event, StoreError> {
    lock_chain(tx)?;
    let (last_seq, prev_hash) = head(tx)?.unwrap_or((0, GENESIS_HASH.to_owned()));
    let details = canonical_json(&new.details).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut event = Event {
        seq: last_seq + 1,
        time: format_time(new.time),
        actor: new.actor.clone(),
        source: new.source.clone(),
        action: new.action.clone(),
        object: new.object.clone(),
        outcome: new.outcome.as_str().to_owned(),
        reason: new.reason.clone(),
        details,
        prev_hash,
        hash: String::new(),
    };
    event.hash = event
        .compute_hash()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO audit_events (seq, time, actor, source, action, object, outcome, reason, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        &[
            &event.seq,
            &event.time,
            &event.actor,
            &event.source,
            &event.action,
            &event.object,
            &event.outcome,
            &event.reason,
            &event.details,
            &event.prev_hash,
            &event.hash,
        ],
    )?;
    Ok(event)
}

/// The columns [`event_from_row`] reads, in its order, each after `prefix`
/// (a table alias with its dot, or empty).
pub(super) fn event_columns(prefix: &str) -> String {
    [
        "seq",
        "time",
        "actor",
        "source",
        "action",
        "object",
        "outcome",
        "reason",
        "details",
        "prev_hash",
        "hash",
    ]
    .map(|c| format!("{prefix}{c}"))
    .join(", ")
}

/// An event from a row of either engine that selected [`event_columns`].
pub(super) fn event_from(r: &sql::Row<'_, '_>) -> Result<Event, StoreError> {
    Ok(Event {
        seq: r.get(0)?,
        time: r.get(1)?,
        actor: r.get(2)?,
        source: r.get(3)?,
        action: r.get(4)?,
        object: r.get(5)?,
        outcome: r.get(6)?,
        reason: r.get(7)?,
        details: r.get(8)?,
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}

/// Calls `f` for every event in seq order (streaming, constant memory).
pub fn for_each(
    conn: &impl Sql,
    mut f: impl FnMut(Event) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    conn.query_each(
        &format!(
            "SELECT {} FROM audit_events ORDER BY seq",
            event_columns("")
        ),
        &[],
        &mut |r| f(event_from(r)?),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::{Conn, MaybeFault};
    use tpa_core::audit::Outcome;

    fn new_event(reason: &str) -> NewEvent {
        NewEvent {
            time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            actor: "admin:root".into(),
            source: "cli".into(),
            action: "test".into(),
            object: "none".into(),
            outcome: Outcome::Success,
            reason: reason.into(),
            details: serde_json::json!({}),
        }
    }

    // issue 15: the same chain and the same append-only refusals on both engines.
    #[test]
    fn appends_chain_and_triggers_refuse_changes() {
        for (engine, mut conn, _dir) in test_engines() {
            let a = conn.write(|tx| append(tx, &new_event("one"))).unwrap();
            let b = conn.write(|tx| append(tx, &new_event("two"))).unwrap();
            assert_eq!((a.seq, b.seq), (1, 2), "{engine:?}");
            assert_eq!(a.prev_hash, GENESIS_HASH);
            assert_eq!(b.prev_hash, a.hash);

            for sql in [
                "UPDATE audit_events SET reason = 'x' WHERE seq = 1",
                "DELETE FROM audit_events WHERE seq = 2",
            ] {
                let e = conn.execute(sql, &[]).unwrap_err();
                assert!(
                    e.to_string().contains("append-only")
                        || format!("{e:?}").contains("append-only"),
                    "{engine:?}: {e:?}"
                );
                assert_eq!(
                    e.fault(),
                    None,
                    "{engine:?}: a refused change is no condition"
                );
            }

            let mut seen = vec![];
            for_each(&conn, |e| {
                seen.push(e);
                Ok(())
            })
            .unwrap();
            assert_eq!(seen, vec![a, b], "{engine:?}");
        }
    }

    // issue 15: writers on several connections (as on several replicas)
    // append to one linear chain: every event's prev_hash is its
    // predecessor's hash, no seq twice, none lost.
    #[test]
    fn concurrent_writers_keep_one_linear_chain_on_postgres() {
        let (options, _) = crate::store::pg::test_database();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let options = options.clone();
                std::thread::spawn(move || {
                    let mut conn =
                        Conn::Postgres(Box::new(crate::store::pg::connect(&options).unwrap()));
                    for i in 0..25 {
                        conn.write(|tx| {
                            append(tx, &new_event(&format!("{t}-{i}")))?;
                            // Something else in the same transaction after
                            // the append, as issuance does.
                            crate::store::heartbeat::beat(tx, chrono::Utc::now())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let conn = Conn::Postgres(Box::new(crate::store::pg::connect(&options).unwrap()));
        let mut events = vec![];
        for_each(&conn, |e| {
            events.push(e);
            Ok(())
        })
        .unwrap();
        assert_eq!(events.len(), 100);
        let mut prev = GENESIS_HASH.to_owned();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.seq, i as i64 + 1);
            assert_eq!(e.prev_hash, prev, "fork at seq {}", e.seq);
            assert_eq!(e.compute_hash().unwrap(), e.hash);
            prev = e.hash.clone();
        }
    }
}
