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
    let mut chain = Appender::at_head(tx)?;
    let event = chain.push(new)?;
    chain.write(tx)?;
    Ok(event)
}

/// Events chained in memory after the head the transaction read, then
/// written together: a batch of events costs one head read and, on
/// PostgreSQL, one insert, instead of both for each event (issue 15: the
/// issuance batch). The caller holds the chain (the writers' lock) from
/// [`Appender::at_head`] to the commit, and appends nothing else to the
/// trail in between; if it did, the primary key on `seq` would refuse the
/// second event with that number, never fork the chain.
#[derive(Debug)]
pub struct Appender {
    /// The last event chained, written or not: seq and hash.
    last: (i64, String),
    /// Chained, not yet written, in seq order.
    pending: Vec<Event>,
}

impl Appender {
    /// Takes the chain for the rest of the transaction ([`lock_chain`]) and
    /// reads its head.
    pub fn at_head(tx: &impl Sql) -> Result<Self, StoreError> {
        lock_chain(tx)?;
        Ok(Self {
            last: head(tx)?.unwrap_or((0, GENESIS_HASH.to_owned())),
            pending: Vec::new(),
        })
    }

    /// Chains `new` after the last event: its seq and hash as they will be
    /// stored once [`Appender::write`] runs.
    pub fn push(&mut self, new: &NewEvent) -> Result<Event, StoreError> {
        let details =
            canonical_json(&new.details).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (last_seq, prev_hash) = &self.last;
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
            prev_hash: prev_hash.clone(),
            hash: String::new(),
        };
        event.hash = event
            .compute_hash()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.last = (event.seq, event.hash.clone());
        self.pending.push(event.clone());
        Ok(event)
    }

    /// Writes the pending events: on PostgreSQL several in one statement,
    /// otherwise one statement each (SQLite runs them in process).
    pub fn write(&mut self, tx: &impl Sql) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        if tx.engine() == Engine::Postgres && pending.len() > 1 {
            return insert_all_postgres(tx, &pending);
        }
        for event in &pending {
            insert(tx, event)?;
        }
        Ok(())
    }
}

fn insert(tx: &impl Sql, event: &Event) -> Result<(), StoreError> {
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
    Ok(())
}

/// One INSERT for many events: the rows travel as one JSON array, which
/// PostgreSQL unpacks with `jsonb_to_recordset` (every field a JSON string
/// or number, so the stored text is exactly what was hashed).
fn insert_all_postgres(tx: &impl Sql, events: &[Event]) -> Result<(), StoreError> {
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "seq": e.seq, "time": e.time, "actor": e.actor, "source": e.source,
                "action": e.action, "object": e.object, "outcome": e.outcome,
                "reason": e.reason, "details": e.details, "prev_hash": e.prev_hash,
                "hash": e.hash,
            })
        })
        .collect();
    let rows = serde_json::Value::Array(rows).to_string();
    let written = tx.execute(
        "INSERT INTO audit_events (seq, time, actor, source, action, object, outcome, reason, details, prev_hash, hash)
         SELECT seq, time, actor, source, action, object, outcome, reason, details, prev_hash, hash
         FROM jsonb_to_recordset(?1::text::jsonb) AS e(seq bigint, time text, actor text,
             source text, action text, object text, outcome text, reason text, details text,
             prev_hash text, hash text)",
        &[&rows],
    )?;
    if written != events.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{} audit events written of {}",
            written,
            events.len()
        )));
    }
    Ok(())
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

    // issue 15: events chained in memory and written together (one
    // statement on PostgreSQL) are stored byte for byte as they were hashed,
    // whatever their text holds, and continue the chain a single append left.
    #[test]
    fn events_written_together_store_exactly_what_was_hashed() {
        let awkward = [
            "quote \" backslash \\ slash / tab \t newline \n",
            "unicode é 漢字 🚀 and \u{7f} \u{1b}[31m escape",
            "{\"looks\": [\"like\", \"json\"]}",
            "",
        ];
        for (engine, mut conn, _dir) in test_engines() {
            let first = conn.write(|tx| append(tx, &new_event("single"))).unwrap();
            let chained = conn
                .write(|tx| {
                    let mut chain = Appender::at_head(tx)?;
                    let mut out = vec![];
                    for text in awkward {
                        let mut e = new_event(text);
                        e.details = serde_json::json!({ "text": text, "n": -7, "list": [text, null, true] });
                        out.push(chain.push(&e)?);
                    }
                    chain.write(tx)?;
                    Ok::<_, StoreError>(out)
                })
                .unwrap();
            let after = conn.write(|tx| append(tx, &new_event("after"))).unwrap();
            let mut stored = vec![];
            for_each(&conn, |e| {
                stored.push(e);
                Ok(())
            })
            .unwrap();
            let mut expected = vec![first];
            expected.extend(chained);
            expected.push(after);
            assert_eq!(stored, expected, "{engine:?}");
            let mut prev = GENESIS_HASH.to_owned();
            for e in &stored {
                assert_eq!(e.prev_hash, prev, "{engine:?}: fork at seq {}", e.seq);
                assert_eq!(e.compute_hash().unwrap(), e.hash, "{engine:?}");
                prev = e.hash.clone();
            }
        }
    }

    // issue 15: an appender that writes after someone else appended fails
    // on the primary key; it never forks the chain.
    #[test]
    fn a_stale_appender_is_refused_not_forked() {
        for (engine, mut conn, _dir) in test_engines() {
            let result = conn.write(|tx| {
                let mut chain = Appender::at_head(tx)?;
                chain.push(&new_event("late"))?;
                chain.push(&new_event("later"))?;
                append(tx, &new_event("in between"))?;
                chain.write(tx)
            });
            assert!(result.is_err(), "{engine:?}");
            assert_eq!(head(&conn).unwrap(), None, "{engine:?}: nothing committed");
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
