//! WAL checkpoints on their own thread, so that the writer's commits do not
//! stall while SQLite copies the log back into the database file.
//!
//! By default SQLite checkpoints inside the commit that pushes the WAL past
//! 1,000 pages: that commit (and every caller waiting on it) also pays for
//! writing the pages back and an fsync of the database file. The server's
//! writer connection raises that threshold to [`WRITER_AUTOCHECKPOINT`] (a
//! safety net that bounds the WAL if this thread falls behind or fails), and a
//! [`Checkpointer`] runs `PRAGMA wal_checkpoint(PASSIVE)` on its own
//! connection every [`INTERVAL`]. A passive checkpoint never blocks a reader
//! or the writer. Durability is unchanged: a transaction is durable once its
//! WAL frames are synced at commit (`synchronous=FULL`), checkpoint or not.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

use super::{Create, StoreError, open};

/// How often the checkpointer runs.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The writer's own automatic checkpoint threshold, in pages (about 40 MB
/// with 4 KiB pages): reached only if the checkpointer cannot keep up.
pub const WRITER_AUTOCHECKPOINT: i64 = 10_000;

/// Leaves routine checkpoints to a [`Checkpointer`]; see the module comment.
pub fn defer_checkpoints(writer: &Connection) -> Result<(), StoreError> {
    writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)?;
    Ok(())
}

/// Copies committed WAL frames back into the database file without blocking
/// anyone (`PRAGMA wal_checkpoint(PASSIVE)`).
pub fn checkpoint(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

/// A running checkpoint thread; it stops when this handle is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Opens its own connection to `path` and checkpoints every [`INTERVAL`].
    pub fn spawn(path: PathBuf) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("tpa-checkpoint".to_owned())
            .spawn(move || {
                let conn = match open(&path, Create::Never) {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot open the database for checkpoints; the writer checkpoints by itself");
                        return;
                    }
                };
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })?;
        Ok(Self { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_size(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn the_writer_defers_and_the_thread_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path, Create::IfMissing).unwrap();
        defer_checkpoints(&writer).unwrap();
        let threshold: i64 = writer
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(threshold, WRITER_AUTOCHECKPOINT);
        // Settle the migrations into the database file first.
        checkpoint(&writer).unwrap();
        let before = file_size(&path);
        writer
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (zeroblob(200000));")
            .unwrap();
        assert_eq!(file_size(&path), before, "the commit itself checkpointed");
        let handle = Checkpointer::spawn(path.clone()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while file_size(&path) == before && std::time::Instant::now() < deadline {
            std::thread::sleep(INTERVAL / 2);
        }
        drop(handle);
        assert!(
            file_size(&path) > before,
            "the checkpointer did not copy the WAL back"
        );
    }
}
