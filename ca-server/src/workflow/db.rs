//! The workflow's way to the database: a use case on the one writer
//! connection ([`write`]: queued under the current request's deadline, its
//! outcome feeding the write health) or a pure read on a pooled read-only
//! connection ([`read`]: never waits for the writer). Both run on a blocking
//! thread, off the async runtime; the HTTP layer reaches the database only
//! through them.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::task::JoinError;

use super::deadline;
use crate::store::{MaybeFault, ReadPool, StoreError, Writer};

/// Runs `f` on the writer connection, waiting for it at most until the
/// current request's deadline (`default_deadline` from now outside a request).
pub async fn write<T, E>(
    writer: &Arc<Writer>,
    default_deadline: Duration,
    f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + MaybeFault + Send + 'static,
{
    let writer = writer.clone();
    let deadline = deadline::current(default_deadline);
    tokio::task::spawn_blocking(move || writer.run(deadline, f))
        .await
        .unwrap_or_else(|e| Err(task_failed(&e)))
}

/// Runs `f` on a read-only connection of the pool.
pub async fn read<T, E>(
    readers: &Arc<ReadPool>,
    f: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let readers = readers.clone();
    tokio::task::spawn_blocking(move || readers.with(f))
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
