//! The `audit_checkpoints` table: signed chain heads (append-only).

use super::StoreError;
use super::sql::{Row, Sql};
use tpa_core::audit::checkpoint::Checkpoint;

fn from_row(r: &Row<'_, '_>) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        seq: r.get(0)?,
        hash: r.get(1)?,
        time: r.get(2)?,
        key_fingerprint: r.get(3)?,
        signature: r.get(4)?,
    })
}

/// Stores a checkpoint; false when one for that seq exists already.
pub fn insert(tx: &impl Sql, c: &Checkpoint) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT INTO audit_checkpoints (seq, hash, time, key_fingerprint, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (seq) DO NOTHING",
        &[&c.seq, &c.hash, &c.time, &c.key_fingerprint, &c.signature],
    )? == 1)
}

/// The checkpoint with the highest seq.
pub fn latest(conn: &impl Sql) -> Result<Option<Checkpoint>, StoreError> {
    conn.query_opt(
        "SELECT seq, hash, time, key_fingerprint, signature FROM audit_checkpoints
         ORDER BY seq DESC LIMIT 1",
        &[],
        from_row,
    )
}

/// Every checkpoint with `from <= seq <= to`, in seq order.
pub fn in_range(conn: &impl Sql, from: i64, to: i64) -> Result<Vec<Checkpoint>, StoreError> {
    conn.query_vec(
        "SELECT seq, hash, time, key_fingerprint, signature FROM audit_checkpoints
         WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        &[&from, &to],
        from_row,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;

    fn checkpoint(seq: i64, signature: &str) -> Checkpoint {
        Checkpoint {
            seq,
            hash: format!("hash-{seq}"),
            time: "2026-01-01T00:00:00.000000Z".into(),
            key_fingerprint: "SHA256:key".into(),
            signature: signature.into(),
        }
    }

    // issue 15: one checkpoint per seq (a second is ignored, the first
    // kept), the table is append-only, and reads agree, on both engines.
    #[test]
    fn one_checkpoint_per_seq_append_only() {
        for (engine, mut conn, _dir) in test_engines() {
            assert_eq!(latest(&conn).unwrap(), None, "{engine:?}");
            for seq in [3, 1, 7] {
                assert!(
                    conn.write(|tx| insert(tx, &checkpoint(seq, "sig")))
                        .unwrap()
                );
            }
            assert!(
                !conn
                    .write(|tx| insert(tx, &checkpoint(3, "other")))
                    .unwrap(),
                "{engine:?}: a seq is checkpointed once"
            );
            assert_eq!(
                latest(&conn).unwrap(),
                Some(checkpoint(7, "sig")),
                "{engine:?}"
            );
            assert_eq!(
                in_range(&conn, 2, 7).unwrap(),
                vec![checkpoint(3, "sig"), checkpoint(7, "sig")],
                "{engine:?}"
            );
            for sql in [
                "UPDATE audit_checkpoints SET signature = 'forged' WHERE seq = 3",
                "DELETE FROM audit_checkpoints WHERE seq = 1",
            ] {
                let e = conn.execute(sql, &[]).unwrap_err();
                assert!(
                    format!("{e:?}").contains("append-only"),
                    "{engine:?}: {e:?}"
                );
            }
        }
    }
}
