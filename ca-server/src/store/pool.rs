//! A small pool of read-only connections, so that reads (token lookups,
//! request reads, long-poll re-reads) never wait for the writer's mutex.
//!
//! In WAL mode a reader sees the last committed state when its statement
//! starts and never blocks the writer, nor the writer it. Each connection is
//! opened with the same PRAGMAs as the writer plus `query_only`, so nothing
//! read through the pool can write.
//!
//! Hand-written rather than r2d2_sqlite on purpose: it is a fixed set of local
//! file handles, opened and checked (schema version, PRAGMAs) once at start-up
//! so that a bad database stops start-up rather than a later read; r2d2 would
//! add a scheduler thread, connection recycling and a checkout timeout of its
//! own, none of which such handles need. PostgreSQL connections, which do
//! break and must honour the request's deadline, have their own `PgPool`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use rusqlite::{Connection, OpenFlags};

use super::engine::Conn;
use super::{SCHEMA_VERSION, StoreError, configure};

/// Read-only connections to one database file.
#[derive(Debug)]
pub struct ReadPool {
    /// Always `Conn::Sqlite`; held as [`Conn`] so that [`ReadPool::read`]
    /// can hand out the engine-neutral connection the table files take.
    connections: Vec<Mutex<Conn>>,
    next: AtomicUsize,
}

impl ReadPool {
    /// Opens `size` (at least one) read-only connections to an existing,
    /// migrated database. Blocking.
    pub fn open(path: &Path, size: usize) -> Result<Self, StoreError> {
        super::sqlite_only(path)?;
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let connections = (0..size.max(1))
            .map(|_| open_reader(path).map(|c| Mutex::new(Conn::Sqlite(c))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on a free connection (or waits for one). Blocking: call it
    /// from a blocking thread, never from async code.
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        let guard = self.free_connection();
        match &*guard {
            Conn::Sqlite(conn) => f(conn),
            // `open` builds SQLite connections only.
            Conn::Postgres(_) => unreachable!(),
        }
    }

    /// [`ReadPool::with`] with the engine-neutral connection the table
    /// files take (`&impl Sql`), as [`super::pg_pool::PgPool::read`] hands out.
    /// Blocking.
    pub fn read<T>(&self, f: impl FnOnce(&Conn) -> T) -> T {
        f(&self.free_connection())
    }

    fn free_connection(&self) -> MutexGuard<'_, Conn> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.connections.len();
        (0..n)
            .find_map(|i| {
                let slot = self.connections.get((start + i) % n)?;
                match slot.try_lock() {
                    Ok(guard) => Some(guard),
                    // A reader holds no state a panic could have left half-done.
                    Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(TryLockError::WouldBlock) => None,
                }
            })
            .unwrap_or_else(|| self.wait_for(start % n))
    }

    fn wait_for(&self, index: usize) -> MutexGuard<'_, Conn> {
        // `index < len` by construction (`len >= 1`).
        self.connections[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many connections the pool holds.
    pub fn size(&self) -> usize {
        self.connections.len()
    }
}

/// One read-only connection: the writer's PRAGMAs plus `query_only`. The
/// database must already be at this build's schema version.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    configure(&conn)?;
    conn.execute_batch("PRAGMA query_only = ON;")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "schema version {version}, expected {SCHEMA_VERSION}"
        )));
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Create, open};

    #[test]
    fn readers_see_commits_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path, Create::IfMissing).unwrap();
        let pool = ReadPool::open(&path, 2).unwrap();
        let count = |pool: &ReadPool| {
            pool.with(|c| {
                c.query_row("SELECT count(*) FROM audit_events", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap()
        };
        assert_eq!(count(&pool), 0);
        writer
            .execute_batch(
                "INSERT INTO audit_events (seq, time, actor, source, action, object, outcome, reason, details, prev_hash, hash)
                 VALUES (1, 't', 'a', 's', 'x', 'o', 'success', 'r', '{}', 'p', 'h')",
            )
            .unwrap();
        assert_eq!(count(&pool), 1);
        let refused = pool.with(|c| c.execute_batch("DELETE FROM auth_tokens"));
        assert!(refused.is_err(), "a pooled reader wrote");
        let sync: i64 = pool
            .with(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(sync, 2);
    }

    #[test]
    fn missing_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ReadPool::open(&dir.path().join("t.db"), 2),
            Err(StoreError::Missing(_))
        ));
    }

    #[test]
    fn a_busy_pool_hands_out_the_other_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(open(&path, Create::IfMissing).unwrap());
        let pool = ReadPool::open(&path, 2).unwrap();
        // Nested use: the inner call must get the second connection, not deadlock.
        let n = pool.with(|_| pool.with(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))));
        assert_eq!(n.unwrap(), 1);
    }
}
