//! The workflow's way to the database: a use case on a [`Session`] ([`write`]:
//! the SQLite writer connection or a pooled PostgreSQL one, under the current
//! request's deadline, its outcome feeding the write health) or a pure read
//! ([`read`]: a pooled read-only SQLite connection that never waits for the
//! writer, or a pooled PostgreSQL one). Both run on a blocking thread, off the
//! async runtime; the HTTP layer reaches the database only through them.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinError;

use super::deadline;
use crate::store::{Conn, Database, MaybeFault, Session, StoreError};

/// Runs `f` on a session of the configured store, waiting for it at most
/// until the current request's deadline (`default_deadline` from now outside
/// a request).
pub async fn write<T, E>(
    db: &Arc<Database>,
    default_deadline: Duration,
    f: impl FnOnce(&mut Session<'_>) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + MaybeFault + Send + 'static,
{
    let db = db.clone();
    let deadline = deadline::current(default_deadline);
    tokio::task::spawn_blocking(move || db.session(deadline, f))
        .await
        .unwrap_or_else(|e| Err(task_failed(&e)))
}

/// Runs `f` on a connection for reading, under the current request's deadline.
pub async fn read<T, E>(
    db: &Arc<Database>,
    default_deadline: Duration,
    f: impl FnOnce(&Conn) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let db = db.clone();
    let deadline = deadline::current(default_deadline);
    tokio::task::spawn_blocking(move || db.read(deadline, f))
        .await
        .unwrap_or_else(|e| Err(task_failed(&e)))
}

/// A blocking task that panicked or was cancelled: a bug, not a condition
/// (no fault, so answered 500 and not counted against the write health).
fn task_failed<E: From<StoreError>>(e: &JoinError) -> E {
    E::from(StoreError::Aborted(format!(
        "the database task failed: {e}"
    )))
}
