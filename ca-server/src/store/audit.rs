//! The `audit_events` table: append (extending the hash chain) and read in order.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::StoreError;
use tpa_core::audit::{Event, GENESIS_HASH, NewEvent, canonical_json, format_time};

/// The chain head: the last event's seq and hash, or `None` for an empty trail.
pub fn head(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Appends an event inside the caller's write transaction and returns it as stored.
pub fn append(tx: &Transaction<'_>, new: &NewEvent) -> Result<Event, StoreError> {
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
    tx.prepare_cached(
        "INSERT INTO audit_events (seq, time, actor, source, action, object, outcome, reason, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
            event.seq,
            event.time,
            event.actor,
            event.source,
            event.action,
            event.object,
            event.outcome,
            event.reason,
            event.details,
            event.prev_hash,
            event.hash
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

/// An event from a row that selected [`event_columns`].
pub(super) fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
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
    conn: &Connection,
    mut f: impl FnMut(Event) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {} FROM audit_events ORDER BY seq",
        event_columns("")
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f(event_from_row(r)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Create, open, write};
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

    #[test]
    fn appends_chain_and_triggers_refuse_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("t.db"), Create::IfMissing).unwrap();
        let a = write(&mut conn, |tx| append(tx, &new_event("one"))).unwrap();
        let b = write(&mut conn, |tx| append(tx, &new_event("two"))).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.prev_hash, GENESIS_HASH);
        assert_eq!(b.prev_hash, a.hash);

        let e = conn
            .execute("UPDATE audit_events SET reason = 'x' WHERE seq = 1", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let e = conn
            .execute("DELETE FROM audit_events WHERE seq = 2", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");

        let mut seen = vec![];
        for_each(&conn, |e| {
            seen.push(e);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![a, b]);
    }
}
