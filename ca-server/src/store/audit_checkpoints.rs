//! The `audit_checkpoints` table: signed chain heads (append-only).

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::StoreError;
use tpa_core::audit::checkpoint::Checkpoint;

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        seq: r.get(0)?,
        hash: r.get(1)?,
        time: r.get(2)?,
        key_fingerprint: r.get(3)?,
        signature: r.get(4)?,
    })
}

/// Stores a checkpoint; false when one for that seq exists already.
pub fn insert(tx: &Transaction<'_>, c: &Checkpoint) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT OR IGNORE INTO audit_checkpoints (seq, hash, time, key_fingerprint, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.seq, c.hash, c.time, c.key_fingerprint, c.signature],
    )? == 1)
}

/// The checkpoint with the highest seq.
pub fn latest(conn: &Connection) -> Result<Option<Checkpoint>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq, hash, time, key_fingerprint, signature FROM audit_checkpoints
             ORDER BY seq DESC LIMIT 1",
            [],
            from_row,
        )
        .optional()?)
}

/// Every checkpoint with `from <= seq <= to`, in seq order.
pub fn in_range(conn: &Connection, from: i64, to: i64) -> Result<Vec<Checkpoint>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, hash, time, key_fingerprint, signature FROM audit_checkpoints
         WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![from, to], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
