//! The post-incident review of break-glass grants: who may clear it, and
//! clearing it (a refusal commits only its `denied` audit event).

use chrono::{DateTime, Utc};
use serde_json::json;
use tpa_core::audit::Outcome;
use tpa_core::text::{FreeText, TextError, TextField};
use tpa_core::{AccessRequest, Policy, RequestId, User};

use super::Actor;
use super::error::{WorkflowError, refused};
use super::requests::{can_view, event, role_approver};
use crate::refusal::Refusal;
use crate::store::Transact;
use crate::store::audited::{Abort, write_audited};
use crate::store::sql::Sql;
use crate::store::{self, requests};

/// The break-glass grants whose post-incident review `user` may clear (an
/// approver of the role who is not the requester), oldest first.
pub fn open_reviews(
    conn: &impl Sql,
    policy: &Policy,
    user: &User,
) -> Result<Vec<AccessRequest>, WorkflowError> {
    let mut out = Vec::new();
    for id in store::reviews::open_ids(conn, 500)? {
        if let Some(r) = requests::load(conn, &id)?
            && !r.is_requester(user, policy.people())
            && role_approver(policy, user, &r).is_some()
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// Clears the post-incident review of a break-glass grant.
pub fn review_break_glass(
    conn: &mut impl Transact,
    policy: &Policy,
    reviewer: &User,
    id: &RequestId,
    comment: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<AccessRequest, WorkflowError> {
    let actor = Actor::user(reviewer, source);
    // The one free-text rule: no control, format or bidi characters reach
    // the review row or the audit trail.
    let checked = FreeText::parse(TextField::Comment, comment);
    let comment = checked.as_ref().map_or("", FreeText::as_str);
    write_audited(conn, |tx| {
        let Some(r) = requests::load(tx, id)? else {
            return Err(Abort::Refused(WorkflowError::NotFound));
        };
        let problem = review_problem(tx, (policy, reviewer), &r, &checked, now)?;
        let (outcome, why, details) = match &problem {
            None => (
                Outcome::Success,
                comment.to_owned(),
                json!({ "break_glass": true }),
            ),
            Some(WorkflowError::Refused { code, message }) => (
                Outcome::Denied,
                message.clone(),
                json!({ "code": code.code() }),
            ),
            Some(_) => (
                Outcome::Denied,
                "no such request for this user".to_owned(),
                json!({ "code": "not_found" }),
            ),
        };
        let e = event(
            &actor,
            "request.review",
            id.as_str(),
            outcome,
            &why,
            details,
            now,
        );
        store::audit::append(tx, &e)?;
        match problem {
            None => Ok(r),
            Some(e) => Err(Abort::Refused(e)),
        }
    })
}

/// Why `reviewer` may not clear the review of `r` with `comment`, if
/// anything; none completes the review (the one write of a review).
fn review_problem(
    tx: &impl Sql,
    (policy, reviewer): (&Policy, &User),
    r: &AccessRequest,
    comment: &Result<FreeText, TextError>,
    now: DateTime<Utc>,
) -> Result<Option<WorkflowError>, WorkflowError> {
    let id = &r.id;
    let text = comment.as_ref().map_or("", FreeText::as_str);
    Ok(if can_view(policy, reviewer, r).is_none() {
        Some(WorkflowError::NotFound)
    } else if store::reviews::state(tx, id)?.is_none() {
        Some(refused(
            Refusal::NotBreakGlass,
            "this request was not a break-glass grant; nothing to review",
        ))
    } else if r.is_requester(reviewer, policy.people()) {
        Some(refused(
            Refusal::OwnRequest,
            "you cannot review your own break-glass grant",
        ))
    } else if role_approver(policy, reviewer, r).is_none() {
        Some(refused(
            Refusal::NotApprover,
            format!(
                "only approvers of role {} review its break-glass grants",
                r.role
            ),
        ))
    } else if let Err(e) = comment {
        Some(refused(Refusal::from(e), e.to_string()))
    } else if text.is_empty() {
        Some(refused(
            Refusal::BadComment,
            "a review needs a comment: what was done with the access",
        ))
    } else if !store::reviews::complete(tx, id, reviewer, text, now)? {
        Some(refused(
            Refusal::AlreadyReviewed,
            "this break-glass grant was already reviewed",
        ))
    } else {
        None
    })
}
