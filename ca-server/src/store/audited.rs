//! Writes whose refusal still commits its `denied` audit event: the closure
//! ends early with an [`Abort`] that says whether to commit what it wrote
//! (only that event) or roll everything back, and the caller gets one
//! `Result<T, E>`.
//!
//! The rule that keeps this safe: every `?` is [`Abort::Failed`] (roll back);
//! only code that has appended the refusal's audit event, and written nothing
//! else it should not keep, returns [`Abort::Refused`].

use super::StoreError;
use super::engine::{Transact, Tx};

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

/// Runs `f` in a write transaction of either engine (`BEGIN IMMEDIATE` on
/// SQLite). `Ok` and [`Abort::Refused`] commit; [`Abort::Failed`] rolls back.
pub fn write_audited<T, E: From<StoreError>>(
    conn: &mut impl Transact,
    f: impl FnOnce(&Tx<'_>) -> Result<T, Abort<E>>,
) -> Result<T, E> {
    let ended = conn.write(|tx| match f(tx) {
        Ok(value) => Ok(Ended::Done(value)),
        Err(Abort::Refused(e)) => Ok(Ended::Refused(e)),
        Err(Abort::Failed(e)) => Err(e),
    })?;
    match ended {
        Ended::Done(value) => Ok(value),
        Ended::Refused(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::sql::Sql;

    fn count(conn: &impl Sql) -> i64 {
        conn.query_one("SELECT count(*) FROM outbox_cursors", &[], |r| r.get(0))
            .unwrap()
    }

    fn insert(tx: &impl Sql, sink: &str) -> Result<(), Abort<StoreError>> {
        tx.execute(
            "INSERT INTO outbox_cursors (sink, delivered_through) VALUES (?1, 0)",
            &[&sink],
        )
        .map_err(Abort::Failed)?;
        Ok(())
    }

    fn refusal() -> StoreError {
        StoreError::Aborted("refused".into())
    }

    // issue 15: on both engines a refusal commits what it wrote (its audit
    // event), a failure rolls back.
    #[test]
    fn a_refusal_commits_what_was_written() {
        for (engine, mut conn, _dir) in test_engines() {
            let got: Result<(), _> = write_audited(&mut conn, |tx| {
                insert(tx, "a")?;
                Err(Abort::Refused(refusal()))
            });
            assert!(matches!(got, Err(StoreError::Aborted(_))), "{engine:?}");
            assert_eq!(count(&conn), 1, "{engine:?}");
        }
    }

    #[test]
    fn a_failure_rolls_back() {
        for (engine, mut conn, _dir) in test_engines() {
            let got: Result<(), _> = write_audited(&mut conn, |tx| {
                insert(tx, "a")?;
                Err(Abort::Failed(refusal()))
            });
            assert!(got.is_err(), "{engine:?}");
            assert_eq!(count(&conn), 0, "{engine:?}");
        }
    }
}
