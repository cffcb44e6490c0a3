//! The probes of `/healthz`: a heartbeat row rewritten on a timer, so that
//! health knows whether the database takes writes even when nobody else
//! writes (plain SQL, an upsert, that PostgreSQL runs as well), and the free
//! space of the database's file system.

use super::StoreError;
use super::sql::Sql;
use chrono::{DateTime, Utc};
use tpa_core::audit::format_time;

/// Rewrites the heartbeat row inside the caller's write transaction.
pub fn beat(tx: &impl Sql, now: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO heartbeat (id, beat_at, beats) VALUES (1, ?1, 1)
         ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at, beats = heartbeat.beats + 1",
        &[&format_time(now)],
    )?;
    Ok(())
}

/// Bytes an unprivileged writer may still use on the file system of `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;

    // issue 15: the upsert keeps one row on both engines.
    #[test]
    fn beats_count_up_in_one_row() {
        for (engine, mut conn, _dir) in test_engines() {
            for _ in 0..3 {
                conn.write(|tx| beat(tx, Utc::now())).unwrap();
            }
            let (rows, beats): (i64, i64) = conn
                .query_one("SELECT count(*), max(beats) FROM heartbeat", &[], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((rows, beats), (1, 3), "{engine:?}");
        }
    }
}
