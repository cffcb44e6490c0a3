//! The handlers' way to the database, over [`crate::workflow::db`]: a
//! workflow step on the writer connection ([`run`], [`with_db`],
//! [`with_writer`]) or on a pooled read-only one ([`read`],
//! [`with_reader`]), with their errors as API errors.

use crate::app::AppState;
use crate::http::error::ApiError;
use crate::store::{Conn, MaybeFault, Session, StoreError};
use crate::workflow::db;
use crate::workflow::requests::WorkflowError;

/// Runs a workflow step on the writer connection; workflow errors keep their codes.
pub(crate) async fn run<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Session<'_>) -> Result<T, WorkflowError> + Send + 'static,
) -> Result<T, ApiError> {
    with_writer(state, f).await.map_err(ApiError::from)
}

/// Runs a read on a pooled read-only connection; workflow errors keep their codes.
pub(crate) async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Conn) -> Result<T, WorkflowError> + Send + 'static,
) -> Result<T, ApiError> {
    db::read(&state.database, state.config.write_deadline, f)
        .await
        .map_err(ApiError::from)
}

/// Runs a store step on the writer connection; any error is internal (a
/// fault in its chain is answered 503).
pub(crate) async fn with_db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Session<'_>) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    with_writer(state, f).await.map_err(ApiError::Internal)
}

/// Runs a step with its own error type (a refusal or a store fault) on the
/// writer connection, under the current request's deadline.
pub(crate) async fn with_writer<T, E>(
    state: &AppState,
    f: impl FnOnce(&mut Session<'_>) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + MaybeFault + Send + 'static,
{
    db::write(&state.database, state.config.write_deadline, f).await
}

/// Runs a store read on a pooled read-only connection; never waits for the writer.
pub(crate) async fn with_reader<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Conn) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    db::read(&state.database, state.config.write_deadline, f)
        .await
        .map_err(ApiError::Internal)
}
