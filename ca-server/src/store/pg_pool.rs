//! A small pool of PostgreSQL connections for one replica, handed out under
//! a deadline as the SQLite writer is: waiting for a free connection ends at
//! the deadline, and the connection carries it (`PgConn::set_deadline`):
//! a statement may run until it (`statement_timeout`) and no lock wait
//! outlives it (`lock_timeout` lowered to the time left before each
//! statement); they fail as [`Fault::DeadlinePassed`] / [`Fault::Locked`]
//! (503).
//!
//! Connections open lazily and are replaced when broken (the server
//! restarted or failed over): the call that found one broken fails as a
//! condition, and the next call gets a fresh connection, without a restart.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::engine::{Conn, Tx};
use super::pg::{PgOptions, connect};
use super::{Fault, StoreError};

/// Up to `size` connections to one database.
#[derive(Debug)]
pub struct PgPool {
    options: PgOptions,
    size: usize,
    state: Mutex<State>,
    free: Condvar,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Conn>,
    /// Connections open, idle or handed out.
    open: usize,
}

impl PgPool {
    /// A pool of at most `size` (at least one) connections; none is opened
    /// until needed.
    pub fn new(options: PgOptions, size: usize) -> Self {
        Self {
            options,
            size: size.max(1),
            state: Mutex::new(State::default()),
            free: Condvar::new(),
        }
    }

    /// Runs `f` in a write transaction on a pooled connection under
    /// `deadline`; commits when it returns `Ok`. Blocking.
    pub fn write<T, E: From<StoreError>>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.get(deadline)?;
        let result = conn.write(f);
        self.put(conn);
        result
    }

    /// Runs `f` on a pooled connection it may open transactions on, under
    /// `deadline`. Blocking.
    pub fn with<T, E: From<StoreError>>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.get(deadline)?;
        let result = f(&mut conn);
        self.put(conn);
        result
    }

    /// Runs `f` on a pooled connection (statements commit one by one)
    /// under `deadline`. Blocking.
    pub fn read<T, E: From<StoreError>>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let conn = self.get(deadline)?;
        let result = f(&conn);
        self.put(conn);
        result
    }

    /// Connections open now (idle or in use).
    pub fn open_connections(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection whose statements end at `deadline`.
    fn get(&self, deadline: Instant) -> Result<Conn, StoreError> {
        let conn = self.take(deadline)?;
        let set = match &conn {
            Conn::Postgres(pg) => pg.set_deadline(Some(deadline)),
            Conn::Sqlite(_) => Ok(()),
        };
        match set {
            Ok(()) => Ok(conn),
            Err(e) => {
                self.put(conn);
                Err(e)
            }
        }
    }

    /// An idle connection, a new one while fewer than `size` are open, or
    /// the first one given back before `deadline`.
    fn take(&self, deadline: Instant) -> Result<Conn, StoreError> {
        let mut state = self.lock();
        loop {
            while let Some(conn) = state.idle.pop() {
                if !is_closed(&conn) {
                    return Ok(conn);
                }
                state.open -= 1;
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match connect(&self.options) {
                    Ok(conn) => Ok(Conn::Postgres(Box::new(conn))),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.free.notify_one();
                        Err(e)
                    }
                };
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Err(StoreError::Condition(Fault::DeadlinePassed));
            }
            state = self
                .free
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Gives a connection back; a broken one is dropped (and replaced at the
    /// next call).
    fn put(&self, conn: Conn) {
        if let Conn::Postgres(pg) = &conn {
            // Clearing cannot fail: there is no deadline left to check.
            let _ = pg.set_deadline(None);
        }
        let mut state = self.lock();
        if is_closed(&conn) {
            state.open -= 1;
        } else {
            state.idle.push(conn);
        }
        drop(state);
        self.free.notify_one();
    }
}

/// The PostgreSQL client closes its connection by blocking on its own
/// runtime, which panics on an async runtime's thread; the last handle to a
/// serving CA's state may well be dropped there (at shutdown). Idle
/// connections are then closed on a thread of their own.
impl Drop for PgPool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        if idle.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let closing = std::thread::Builder::new()
            .name("tpa-pg-close".to_owned())
            .spawn(move || drop(idle));
        if let Err(e) = closing {
            tracing::warn!(error = %e, "cannot close the PostgreSQL connections");
        }
    }
}

fn is_closed(conn: &Conn) -> bool {
    match conn {
        Conn::Postgres(c) => c.is_closed(),
        Conn::Sqlite(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::MaybeFault;
    use crate::store::pg::test_database;
    use crate::store::sql::Sql;

    fn pool(size: usize) -> PgPool {
        let (options, _) = test_database();
        PgPool::new(options, size)
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    // issue 15: a statement ends at its request's deadline (statement_timeout
    // set from the time left) and fails as a condition, not a bug.
    #[test]
    fn a_statement_ends_at_the_deadline() {
        let pool = pool(1);
        let start = Instant::now();
        let e = pool
            .read(soon(500), |c| {
                c.query_one("SELECT 1 FROM pg_sleep(10)", &[], |r| r.get::<i32>(0))
            })
            .unwrap_err();
        assert_eq!(e.fault(), Some(Fault::DeadlinePassed), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        // The connection is still good for the next request.
        let one: i32 = pool
            .read(soon(10_000), |c| c.query_one("SELECT 1", &[], |r| r.get(0)))
            .unwrap();
        assert_eq!(one, 1);
    }

    // issue 15: a transaction opened late in a call gets what is left of the
    // deadline, not the whole timeout set when the connection was handed
    // out (a login whose reads waited, then whose write waited, took twice
    // its deadline).
    #[test]
    fn a_late_transaction_ends_at_the_call_deadline() {
        let (options, holder) = test_database();
        let pool = PgPool::new(options, 1);
        let tx = holder.begin().unwrap();
        tx.execute("UPDATE krl_state SET version = version + 1", &[])
            .unwrap();
        let start = Instant::now();
        let e = pool
            .with(soon(1500), |conn| {
                std::thread::sleep(Duration::from_millis(1000));
                conn.write(|tx| tx.execute("UPDATE krl_state SET version = version + 10", &[]))
            })
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(e.fault(), Some(Fault::Locked | Fault::DeadlinePassed)),
            "{e:?}"
        );
        assert!(took < Duration::from_millis(2200), "took {took:?}");
        tx.commit().unwrap();
    }

    // issue 15: a write waiting on a row another replica holds gives up at
    // its deadline (lock_timeout) as a condition; nothing of it commits.
    #[test]
    fn a_lock_wait_ends_at_the_deadline() {
        let (options, holder) = test_database();
        let pool = PgPool::new(options, 1);
        let tx = holder.begin().unwrap();
        tx.execute("UPDATE krl_state SET version = version + 1", &[])
            .unwrap();
        let start = Instant::now();
        let e = pool
            .write(soon(500), |tx| {
                tx.execute("UPDATE krl_state SET version = version + 10", &[])
            })
            .unwrap_err();
        assert!(
            matches!(e.fault(), Some(Fault::Locked | Fault::DeadlinePassed)),
            "{e:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        tx.commit().unwrap();
        let version: i64 = pool
            .read(soon(10_000), |c| {
                c.query_one("SELECT version FROM krl_state", &[], |r| r.get(0))
            })
            .unwrap();
        assert_eq!(version, 1);
    }

    // issue 15: with every connection in use, a caller waits for one only
    // until its deadline; with a free one it goes ahead.
    #[test]
    fn a_busy_pool_waits_only_until_the_deadline() {
        let pool = pool(1);
        let inner = pool.read(soon(10_000), |_| {
            let start = Instant::now();
            let e = pool
                .read(soon(300), |_| Ok::<_, StoreError>(()))
                .unwrap_err();
            assert!(start.elapsed() < Duration::from_secs(5));
            Ok::<_, StoreError>(e.fault())
        });
        assert_eq!(inner.unwrap(), Some(Fault::DeadlinePassed));
        let two = PgPool::new(pool.options.clone(), 2);
        let nested = two.read(soon(10_000), |_| {
            two.read(soon(10_000), |_| Ok::<_, StoreError>(2))
        });
        assert_eq!(nested.unwrap(), 2);
        assert_eq!(two.open_connections(), 2);
    }

    // issue 15: a connection the server dropped (restart, failover) fails
    // its call as a condition and is replaced: the next call works, without
    // a restart of the replica.
    #[test]
    fn a_broken_connection_is_replaced() {
        let (options, admin) = test_database();
        let pool = PgPool::new(options, 1);
        let pid = |pool: &PgPool| {
            pool.read(soon(10_000), |c| {
                c.query_one("SELECT pg_backend_pid()", &[], |r| r.get::<i32>(0))
            })
        };
        let first = pid(&pool).unwrap();
        admin
            .execute("SELECT pg_terminate_backend(?1)", &[&first])
            .unwrap();
        let mut answers = Vec::new();
        for _ in 0..3 {
            let answer = pid(&pool);
            if let Err(e) = &answer {
                assert!(
                    e.fault().is_some(),
                    "a dropped connection is a condition: {e:?}"
                );
            }
            answers.push(answer.ok());
            if answers.last().is_some_and(Option::is_some) {
                break;
            }
        }
        let again = answers
            .into_iter()
            .flatten()
            .next()
            .expect("a new connection");
        assert_ne!(again, first);
        assert_eq!(pool.open_connections(), 1);
    }
}
