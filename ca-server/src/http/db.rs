//! The handlers' way to the database: a workflow step on the writer
//! connection ([`run`]) or on a pooled read-only one ([`read`]), with
//! workflow errors kept as API errors.

use crate::app::AppState;
use crate::http::auth::{with_reader, with_writer};
use crate::http::error::ApiError;
use crate::workflow::requests::WorkflowError;

/// Runs a workflow step on the writer connection; workflow errors keep their codes.
pub(crate) async fn run<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, WorkflowError> + Send + 'static,
) -> Result<T, ApiError> {
    with_writer(state, f).await?.map_err(ApiError::from)
}

/// Runs a read on a pooled read-only connection; workflow errors keep their codes.
pub(crate) async fn read<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T, WorkflowError> + Send + 'static,
) -> Result<T, ApiError> {
    with_reader(state, move |conn| Ok(f(conn)))
        .await?
        .map_err(ApiError::from)
}
