//! Ending a grant from the API or the web page: approvers of the role go
//! through the request decision, administrators through the revocation of
//! the request (which covers any request).

use chrono::{DateTime, Utc};
use tpa_core::{AccessRequest, Policy, RequestId};

use super::capability::Admin;
use super::error::WorkflowError;
use super::requests;
use super::revocation::{Revoker, Target, revoke};
use crate::store;
use crate::store::Transact;

/// An administrator (or an approver of its role) ends grant `id` from the API
/// or the web page: approvers go through the request decision
/// ([`requests::revoke`]); administrators through [`revoke`], which
/// covers any request. Returns the request as it now stands.
#[allow(clippy::too_many_arguments, reason = "one use case, every input named")]
pub fn revoke_grant(
    conn: &mut impl Transact,
    policy: &Policy,
    user: &tpa_core::User,
    admin: Option<Admin>,
    id: &RequestId,
    comment: &str,
    signing_key: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<AccessRequest, WorkflowError> {
    if admin.is_none() {
        return requests::revoke(conn, policy, user, id, comment, source, now);
    }
    revoke(
        conn,
        policy,
        &Revoker::user(user, source),
        &Target::Request(id.clone()),
        comment,
        signing_key,
        now,
    )?;
    store::requests::load(conn, id)?.ok_or(WorkflowError::NotFound)
}
