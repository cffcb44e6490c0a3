//! `WorkflowError`: why a use case did not happen: a refusal (a value with
//! its stable code), a missing request, or a failure of storage or signing.

use tpa_core::{DecisionRefusal, IssueRefusal, PolicyRefusal};

use super::IssueError;
use crate::refusal::Refusal;
use crate::store::audited::Abort;
use crate::store::{Fault, MaybeFault, StoreError};

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// A rule said no; the code is stable and the message is for people.
    #[error("{message}")]
    Refused {
        /// Which rule, with its stable machine code.
        code: Refusal,
        /// What was wrong and what to do.
        message: String,
    },
    /// No such request (or not visible to the caller).
    #[error("no such request")]
    NotFound,
    /// The database failed; nothing changed.
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),
    /// Signing failed; nothing was issued.
    #[error("signing failed: {0}")]
    Signing(#[from] crate::signer::SignerError),
    /// Too many decisions by this user in a minute; nothing was decided.
    #[error("too many decisions; retry in {retry_after_secs} s")]
    TooManyDecisions {
        /// Seconds until the next decision may be made.
        retry_after_secs: u64,
    },
}

impl MaybeFault for WorkflowError {
    fn fault(&self) -> Option<Fault> {
        match self {
            WorkflowError::Storage(e) => e.fault(),
            WorkflowError::Refused { .. }
            | WorkflowError::NotFound
            | WorkflowError::Signing(_)
            | WorkflowError::TooManyDecisions { .. } => None,
        }
    }
}

impl From<rusqlite::Error> for WorkflowError {
    fn from(e: rusqlite::Error) -> Self {
        WorkflowError::Storage(StoreError::Sqlite(e))
    }
}

impl From<IssueError> for WorkflowError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Invalid(message) => WorkflowError::Refused {
                code: Refusal::Invalid,
                message,
            },
            IssueError::Storage(e) => WorkflowError::Storage(e),
            IssueError::Signing(e) => WorkflowError::Signing(e),
        }
    }
}

pub(crate) fn refused(code: Refusal, message: impl ToString) -> WorkflowError {
    WorkflowError::Refused {
        code,
        message: message.to_string(),
    }
}

impl From<PolicyRefusal> for WorkflowError {
    fn from(r: PolicyRefusal) -> Self {
        refused(Refusal::from(&r), r)
    }
}

impl From<DecisionRefusal> for WorkflowError {
    fn from(r: DecisionRefusal) -> Self {
        refused(Refusal::from(&r), r)
    }
}

impl From<IssueRefusal> for WorkflowError {
    fn from(r: IssueRefusal) -> Self {
        refused(Refusal::from(&r), r)
    }
}

/// Every `?` inside [`crate::store::audited::write_audited`] rolls back: a
/// refusal commits its audit event only where the code says
/// [`Abort::Refused`] after appending it.
impl<E: Into<WorkflowError>> From<E> for Abort<WorkflowError> {
    fn from(e: E) -> Self {
        Abort::Failed(e.into())
    }
}
