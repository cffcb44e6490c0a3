//! Writes whose refusal still commits its `denied` audit event: the closure
//! ends early with an [`Abort`] that says whether to commit what it wrote
//! (only that event) or roll everything back, and the caller gets one
//! `Result<T, E>`.
//!
//! The rule that keeps this safe: every `?` is [`Abort::Failed`] (roll back);
//! only code that has appended the refusal's audit event, and written nothing
//! else it should not keep, returns [`Abort::Refused`].

use rusqlite::{Connection, Transaction};

use super::{StoreError, savepoint, write};

/// How a write transaction ends early.
#[derive(Debug)]
pub enum Abort<E> {
    /// A refusal whose `denied` audit event is written in the transaction:
    /// commit it, then answer with the refusal.
    Refused(E),
    /// A failure: roll the transaction (or savepoint) back, answer with it.
    Failed(E),
}

impl<E> Abort<E> {
    /// The error the caller answers with, whichever way the write ended.
    pub fn into_inner(self) -> E {
        match self {
            Abort::Refused(e) | Abort::Failed(e) => e,
        }
    }
}

/// Why a use case with its own refusal type (a login, a device code, a
/// consent) did not happen.
#[derive(Debug)]
pub enum Denied<R> {
    /// A rule said no; what the refusal recorded (its audit event, an
    /// expiry that was due) is committed.
    Refused(R),
    /// The store failed; nothing was committed.
    Store(StoreError),
}

impl<R> Denied<R> {
    /// The refusal, or the store failure as an error (for `?`).
    pub fn into_refusal(self) -> Result<R, StoreError> {
        match self {
            Denied::Refused(r) => Ok(r),
            Denied::Store(e) => Err(e),
        }
    }
}

/// A store failure feeds the write health; a refusal does not.
impl<R> super::MaybeFault for Denied<R> {
    fn fault(&self) -> Option<super::Fault> {
        match self {
            Denied::Refused(_) => None,
            Denied::Store(e) => e.fault(),
        }
    }
}

impl<R> From<StoreError> for Denied<R> {
    fn from(e: StoreError) -> Self {
        Denied::Store(e)
    }
}

impl<R> From<rusqlite::Error> for Denied<R> {
    fn from(e: rusqlite::Error) -> Self {
        Denied::Store(StoreError::Sqlite(e))
    }
}

impl<R> Abort<Denied<R>> {
    /// A refusal whose audit event (if it has one) is written: commit.
    pub fn refuse(refusal: R) -> Self {
        Abort::Refused(Denied::Refused(refusal))
    }
}

/// Every `?` on a store error rolls back.
impl<R> From<StoreError> for Abort<Denied<R>> {
    fn from(e: StoreError) -> Self {
        Abort::Failed(Denied::Store(e))
    }
}

impl<R> From<rusqlite::Error> for Abort<Denied<R>> {
    fn from(e: rusqlite::Error) -> Self {
        Abort::Failed(e.into())
    }
}

/// What the transaction itself did: committed with a value or a refusal, or
/// failed (rolled back).
enum Ended<T, E> {
    Done(T),
    Refused(E),
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction. `Ok` and [`Abort::Refused`]
/// commit; [`Abort::Failed`] rolls back.
pub fn write_audited<T, E: From<rusqlite::Error>>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, Abort<E>>,
) -> Result<T, E> {
    let ended = write(conn, |tx| match f(tx) {
        Ok(value) => Ok(Ended::Done(value)),
        Err(Abort::Refused(e)) => Ok(Ended::Refused(e)),
        Err(Abort::Failed(e)) => Err(e),
    })?;
    match ended {
        Ended::Done(value) => Ok(value),
        Ended::Refused(e) => Err(e),
    }
}

/// One job of a batch inside a savepoint of the caller's transaction: `Ok`
/// and [`Abort::Refused`] keep what the job wrote, [`Abort::Failed`] rolls
/// back the job alone. The inner result is the job's answer; the outer `Err`
/// means the savepoint itself failed and the caller must abandon the whole
/// transaction (the batch's failure, not the job's).
pub fn savepoint_audited<T, E>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, Abort<E>>,
) -> Result<Result<T, E>, rusqlite::Error> {
    let kept = savepoint(tx, |tx| match f(tx) {
        Ok(value) => Ok(Ended::Done(value)),
        Err(Abort::Refused(e)) => Ok(Ended::Refused(e)),
        Err(Abort::Failed(e)) => Err(e),
    })?;
    Ok(match kept {
        Ok(Ended::Done(value)) => Ok(value),
        Ok(Ended::Refused(e)) | Err(e) => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        conn
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn insert(tx: &Transaction<'_>) -> Result<(), Abort<rusqlite::Error>> {
        tx.execute("INSERT INTO t VALUES (1)", [])
            .map_err(Abort::Failed)?;
        Ok(())
    }

    #[test]
    fn a_refusal_commits_what_was_written() {
        let mut conn = db();
        let got: Result<(), _> = write_audited(&mut conn, |tx| {
            insert(tx)?;
            Err(Abort::Refused(rusqlite::Error::InvalidQuery))
        });
        assert!(matches!(got, Err(rusqlite::Error::InvalidQuery)));
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn a_failure_rolls_back() {
        let mut conn = db();
        let got: Result<(), _> = write_audited(&mut conn, |tx| {
            insert(tx)?;
            Err(Abort::Failed(rusqlite::Error::InvalidQuery))
        });
        assert!(got.is_err());
        assert_eq!(count(&conn), 0);
    }

    #[test]
    fn savepoint_jobs_keep_refusals_and_drop_failures() {
        let mut conn = db();
        let answers = super::super::write(&mut conn, |tx| {
            let ok = savepoint_audited(tx, insert)?;
            let refused = savepoint_audited(tx, |tx| {
                insert(tx)?;
                Err::<(), _>(Abort::Refused(rusqlite::Error::InvalidQuery))
            })?;
            let failed = savepoint_audited(tx, |tx| {
                insert(tx)?;
                Err::<(), _>(Abort::Failed(rusqlite::Error::InvalidQuery))
            })?;
            Ok::<_, rusqlite::Error>([ok, refused, failed])
        })
        .unwrap();
        assert!(answers[0].is_ok());
        assert!(answers[1].is_err() && answers[2].is_err());
        assert_eq!(count(&conn), 2);
    }
}
