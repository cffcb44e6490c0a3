//! Access-request use cases: submit, approve, deny, cancel, revoke, expire,
//! and the reads that decide who sees what (certificates are in
//! `issuance.rs`, break-glass reviews in `reviews.rs`).
//!
//! Each runs in one `BEGIN IMMEDIATE` transaction that re-reads the request,
//! applies the `tpa-core` state machine, writes the result and its audit event,
//! and commits. A refusal commits only its `denied` audit event (and an expiry
//! that was due); the request itself is unchanged.

use crate::refusal::Refusal;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tpa_core::{
    AccessRequest, ApprovalPath, ApproveOutcome, Approvers, HostName, Narrowing, Policy, RequestId,
    RequestInput, RequestState, Revalidation, User,
};

use super::capability::{Admin, Approver, Viewer};
pub use super::error::WorkflowError;
use super::error::refused;
use super::{Actor, integrations};
use crate::auth::identity::Identities;
use crate::config::WorkflowConfig;
use crate::integrations::Prechecks;
use crate::notify;
use crate::store::audited::{Abort, write_audited};
use crate::store::integrations::CheckRow;
use crate::store::sql::Sql;
use crate::store::{self, requests};
use crate::store::{Transact, Tx};
use tpa_core::audit::{NewEvent, Outcome};

/// A submitted request, or the still-active grant it duplicates.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The request.
    pub request: AccessRequest,
    /// True when an identical active grant was returned instead of a new request.
    pub existing: bool,
}

pub(super) fn event(
    actor: &Actor,
    action: &str,
    id: &str,
    outcome: Outcome,
    reason: &str,
    details: Value,
    now: DateTime<Utc>,
) -> NewEvent {
    NewEvent {
        time: now,
        actor: actor.id.clone(),
        source: actor.source.clone(),
        action: action.to_owned(),
        object: format!("request:{id}"),
        outcome,
        reason: reason.to_owned(),
        details,
    }
}

fn summary(r: &AccessRequest) -> Value {
    json!({
        "role": r.role.as_str(),
        "hosts": r.hosts.iter().map(HostName::as_str).collect::<Vec<_>>(),
        "duration_secs": r.duration.as_secs(),
        "state": r.state.as_str(),
        "path": r.path.as_str(),
        "ticket": r.ticket,
        "content_hash": r.content_hash(),
        "window_end": r.window.map(|w| tpa_core::audit::format_time(w.end)),
    })
}

/// Submits a request. Policy refusals are audited as denied.
pub fn submit(
    conn: &mut impl Transact,
    policy: &Policy,
    settings: &WorkflowConfig,
    requester: &User,
    input: &RequestInput,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Submitted, WorkflowError> {
    let none = Prechecks::default();
    submit_with(
        conn,
        (policy, settings),
        requester,
        input,
        source,
        now,
        &none,
    )
}

/// Submits a request with what the on-call and ticket providers answered
/// before the transaction (`prechecks`): a ticket refusal refuses it (audited
/// as denied), an on-call answer approves it against its snapshot, and every
/// check is recorded with it.
pub fn submit_with(
    conn: &mut impl Transact,
    (policy, settings): (&Policy, &WorkflowConfig),
    requester: &User,
    input: &RequestInput,
    source: &str,
    now: DateTime<Utc>,
    prechecks: &Prechecks,
) -> Result<Submitted, WorkflowError> {
    let actor = Actor::user(requester, source);
    let checked = match policy.check_request(requester, input, now) {
        Ok(c) => c,
        Err(refusal) => {
            let details = json!({ "role": input.role.chars().take(64).collect::<String>() });
            deny_submission(conn, &actor, &refusal.to_string(), details, now)?;
            return Err(refusal.into());
        }
    };
    if let Some((code, message)) = &prechecks.refusal {
        let details = json!({
            "role": checked.role.as_str(),
            "code": code.code(),
            "checks": integrations::checks_json(&prechecks.checks),
        });
        deny_submission(conn, &actor, message, details, now)?;
        return Err(refused(*code, message));
    }
    conn.write(|tx| {
        if let Some(id) = requests::find_active_grant(
            tx,
            &requester.identity,
            &checked.role,
            &checked.hosts,
            now,
        )? {
            let request = requests::load(tx, &id)?.ok_or(WorkflowError::NotFound)?;
            return Ok(Submitted {
                request,
                existing: true,
            });
        }
        let id = RequestId::generate(&mut rand::rng());
        let mut request = AccessRequest::submit(id, requester, checked, now, settings.pending_ttl);
        let checks = integrations::apply_on_call(policy, &mut request, prechecks, now);
        record_submission(tx, policy, &actor, &request, &checks, now)?;
        record_instant_approval(tx, policy, &request, prechecks, now)?;
        Ok(Submitted {
            request,
            existing: false,
        })
    })
}

/// Stores a new request with its checks, its `request.submit` event and
/// its `request.created` notification.
fn record_submission(
    tx: &impl Sql,
    policy: &Policy,
    actor: &Actor,
    request: &AccessRequest,
    checks: &[CheckRow],
    now: DateTime<Utc>,
) -> Result<(), WorkflowError> {
    requests::insert(tx, request, now)?;
    store::integrations::save_checks(tx, &request.id, checks)?;
    let mut details = summary(request);
    if !checks.is_empty() {
        details["checks"] = integrations::checks_json(checks);
    }
    let e = event(
        actor,
        "request.submit",
        request.id.as_str(),
        Outcome::Success,
        &request.reason,
        details,
        now,
    );
    store::audit::append(tx, &e)?;
    notify::enqueue_request_event(tx, "request.created", request, policy, now)?;
    Ok(())
}

/// Records a refused submission: its `denied` audit event, alone.
fn deny_submission(
    conn: &mut impl Transact,
    actor: &Actor,
    reason: &str,
    details: Value,
    now: DateTime<Utc>,
) -> Result<(), WorkflowError> {
    let e = event(
        actor,
        "request.submit",
        "none",
        Outcome::Denied,
        reason,
        details,
        now,
    );
    conn.write(|tx| store::audit::append(tx, &e).map(drop))?;
    Ok(())
}

/// A request approved as it was submitted (on call, break glass, or the
/// role's `auto_approve`): its approval event and notification, and a
/// break-glass grant's open review.
fn record_instant_approval(
    tx: &impl Sql,
    policy: &Policy,
    request: &AccessRequest,
    prechecks: &Prechecks,
    now: DateTime<Utc>,
) -> Result<(), WorkflowError> {
    if request.path == ApprovalPath::OnCall {
        let e = integrations::on_call_event(request, prechecks, summary(request), now);
        store::audit::append(tx, &e)?;
        notify::enqueue_request_event(tx, "request.approved", request, policy, now)?;
        return Ok(());
    }
    if request.state != RequestState::Approved {
        return Ok(());
    }
    let (action, why, kind) = match request.path {
        ApprovalPath::BreakGlass => (
            "request.break_glass",
            "break-glass self-approval",
            "request.break_glass",
        ),
        _ => (
            "request.approve",
            "auto-approved by the role's auto_approve rule",
            "request.approved",
        ),
    };
    let e = event(
        &system(),
        action,
        request.id.as_str(),
        Outcome::Success,
        why,
        summary(request),
        now,
    );
    store::audit::append(tx, &e)?;
    notify::enqueue_request_event(tx, kind, request, policy, now)?;
    if request.path == ApprovalPath::BreakGlass {
        store::reviews::open(tx, &request.id)?;
    }
    Ok(())
}

fn system() -> Actor {
    Actor {
        id: "system".to_owned(),
        source: "policy".to_owned(),
    }
}

/// Expires `r` if its pending TTL ran out: row, audit event, notification.
fn expire_in(
    tx: &impl Sql,
    policy: &Policy,
    r: &mut AccessRequest,
    stored: usize,
    now: DateTime<Utc>,
) -> Result<bool, WorkflowError> {
    if !r.expire_if_due(now) {
        return Ok(false);
    }
    requests::update(tx, r, stored, now)?;
    // Wakes `/wait` on every replica at commit (PostgreSQL; a no-op on SQLite).
    store::changes::request_changed(tx, &r.id)?;
    let e = event(
        &system(),
        "request.expire",
        r.id.as_str(),
        Outcome::Success,
        "pending TTL ran out",
        json!({}),
        now,
    );
    store::audit::append(tx, &e)?;
    notify::enqueue_request_event(tx, "request.expired", r, policy, now)?;
    Ok(true)
}

/// What a successful decision did: its value, the audit reason, and the
/// notification it sends (if any).
struct Decided<T> {
    value: T,
    why: String,
    event: Option<&'static str>,
    /// Approvals that stopped counting before this decision.
    reapproval: Option<Revalidation>,
}

/// The audit event of approvals that stopped counting: "needs re-approval because …".
pub(super) fn reapproval_event(
    r: &AccessRequest,
    found: &Revalidation,
    now: DateTime<Utc>,
) -> NewEvent {
    let voided: Vec<Value> = found
        .voided
        .iter()
        .map(|v| {
            json!({
                "approver": v.approval.approver.to_string(),
                "approver_username": v.approval.approver_username.as_str(),
                "stage": v.approval.stage + 1,
                "group": v.approval.group.as_str(),
                "why": v.why,
            })
        })
        .collect();
    event(
        &system(),
        "request.reapproval",
        r.id.as_str(),
        Outcome::Success,
        &format!("needs re-approval because {}", found.why()),
        json!({ "voided": voided, "state": r.state.as_str(), "reopened": found.reopened.is_some() }),
        now,
    )
}

/// Re-checks the approvals of `r` against the role and the approvers as
/// they are now; what stopped counting is removed (see
/// `AccessRequest::revalidate`).
pub(super) fn revalidate_in(
    tx: &impl Sql,
    policy: &Policy,
    identities: &Identities,
    r: &mut AccessRequest,
    now: DateTime<Utc>,
) -> Result<Revalidation, WorkflowError> {
    let Some(role) = policy.role(&r.role) else {
        return Ok(Revalidation::default());
    };
    let current = super::approvers::current(tx, identities, r)?;
    let ctx = Approvers {
        people: policy.people(),
        current: &current,
    };
    Ok(r.revalidate(role, &ctx, now))
}

/// Runs a decision on a re-read request in one transaction; a refusal commits
/// only its audit event (and an expiry that was due).
fn decide<T>(
    conn: &mut impl Transact,
    policy: &Policy,
    (actor, action): (&Actor, &str),
    id: &RequestId,
    now: DateTime<Utc>,
    f: impl FnOnce(&Tx<'_>, &mut AccessRequest) -> Result<Decided<T>, WorkflowError>,
) -> Result<(AccessRequest, T), WorkflowError> {
    write_audited(conn, |tx| {
        let mut r = requests::load(tx, id)?.ok_or(WorkflowError::NotFound)?;
        let stored = r.approvals.len();
        expire_in(tx, policy, &mut r, stored, now)?;
        let was_granted = r.state == RequestState::Approved;
        let decided = match f(tx, &mut r) {
            Ok(decided) => decided,
            Err(WorkflowError::Refused { code, message }) => {
                // Only the refusal's event (and an expiry that was due) commits.
                let e = event(
                    actor,
                    action,
                    id.as_str(),
                    Outcome::Denied,
                    &message,
                    json!({ "code": code.code() }),
                    now,
                );
                store::audit::append(tx, &e)?;
                return Err(Abort::Refused(WorkflowError::Refused { code, message }));
            }
            Err(other) => return Err(other.into()),
        };
        let value = record_decision(
            tx,
            policy,
            (actor, action),
            &mut r,
            stored,
            was_granted,
            decided,
            now,
        )?;
        Ok((r, value))
    })
}

/// Writes a decision that happened: the row, re-approval and decision
/// events, the grant's revocation when it ended early, its notification.
#[allow(
    clippy::too_many_arguments,
    reason = "one step of decide, every input named"
)]
fn record_decision<T>(
    tx: &impl Sql,
    policy: &Policy,
    (actor, action): (&Actor, &str),
    r: &mut AccessRequest,
    stored: usize,
    was_granted: bool,
    decided: Decided<T>,
    now: DateTime<Utc>,
) -> Result<T, WorkflowError> {
    let Decided {
        value,
        why,
        event: kind,
        reapproval,
    } = decided;
    requests::update(tx, r, stored, now)?;
    // Wakes `/wait` on every replica at commit (PostgreSQL; a no-op on SQLite).
    store::changes::request_changed(tx, &r.id)?;
    if let Some(found) = reapproval.filter(|f| !f.is_empty()) {
        store::audit::append(tx, &reapproval_event(r, &found, now))?;
    }
    let e = event(
        actor,
        action,
        r.id.as_str(),
        Outcome::Success,
        &why,
        summary(r),
        now,
    );
    let seq = store::audit::append(tx, &e)?.seq;
    if was_granted && matches!(r.state, RequestState::Revoked | RequestState::Cancelled) {
        // The grant ended early: its certificates join the KRL.
        let reason = if why.is_empty() { action } else { why.as_str() };
        super::revocation::record_request_end(tx, r, reason, &actor.id, seq, now)?;
    }
    if let Some(kind) = kind {
        notify::enqueue_request_event(tx, kind, r, policy, now)?;
    }
    Ok(value)
}

fn role_of<'p>(policy: &'p Policy, r: &AccessRequest) -> Result<&'p tpa_core::Role, WorkflowError> {
    policy.role(&r.role).ok_or_else(|| {
        refused(
            Refusal::UnknownRole,
            format!("role {} no longer exists", r.role),
        )
    })
}

/// An approval as submitted: narrowing and an optional comment.
#[derive(Debug, Clone, Default)]
pub struct ApproveInput {
    /// Shorter duration, fewer hosts.
    pub narrowing: Narrowing,
    /// The approver's comment (may be empty).
    pub comment: String,
    /// The content hash the approver decided on (the policy hook's automated
    /// check): refused with `content_changed` if the request differs now.
    pub seen_content_hash: Option<String>,
}

impl From<Narrowing> for ApproveInput {
    fn from(narrowing: Narrowing) -> Self {
        Self {
            narrowing,
            ..Self::default()
        }
    }
}

/// Records `approver`'s approval. `approver` must be the user as of now
/// (groups re-read). Earlier approvals are re-checked against the role and
/// their approvers' current groups first; those that stopped counting are
/// removed (audited as `request.reapproval`).
#[allow(clippy::too_many_arguments, reason = "one use case, every input named")]
pub fn approve(
    conn: &mut impl Transact,
    policy: &Policy,
    identities: &Identities,
    approver: &User,
    id: &RequestId,
    input: impl Into<ApproveInput>,
    source: &str,
    now: DateTime<Utc>,
) -> Result<(AccessRequest, ApproveOutcome), WorkflowError> {
    let actor = Actor::user(approver, source);
    let ApproveInput {
        narrowing,
        comment,
        seen_content_hash,
    } = input.into();
    decide(
        conn,
        policy,
        (&actor, "request.approve"),
        id,
        now,
        |tx, r| {
            let role = role_of(policy, r)?;
            if seen_content_hash
                .as_ref()
                .is_some_and(|seen| *seen != r.content_hash())
            {
                return Err(refused(
                    Refusal::ContentChanged,
                    "the request changed after the automated check saw it",
                ));
            }
            let found = revalidate_in(tx, policy, identities, r, now)?;
            let current = super::approvers::current(tx, identities, r)?;
            let ctx = Approvers {
                people: policy.people(),
                current: &current,
            };
            let outcome = r.approve(role, approver, narrowing, &ctx, now)?;
            r.comment_last_approval(&comment)?;
            let (why, event) = match &outcome {
                ApproveOutcome::Approved(_) => {
                    ("final approval".to_owned(), Some("request.approved"))
                }
                ApproveOutcome::Recorded { still_needed, .. } => (
                    format!("approval recorded; {still_needed} more needed"),
                    None,
                ),
            };
            Ok(Decided {
                value: outcome,
                why,
                event,
                reapproval: Some(found),
            })
        },
    )
}

/// Denies a request with an optional comment.
pub fn deny(
    conn: &mut impl Transact,
    policy: &Policy,
    approver: &User,
    id: &RequestId,
    comment: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<AccessRequest, WorkflowError> {
    let actor = Actor::user(approver, source);
    decide(conn, policy, (&actor, "request.deny"), id, now, |_, r| {
        r.deny(role_of(policy, r)?, approver, policy.people(), comment, now)?;
        let why = r.comment.clone().unwrap_or_default();
        Ok(Decided {
            value: (),
            why,
            event: Some("request.denied"),
            reapproval: None,
        })
    })
    .map(|(r, ())| r)
}

/// The requester cancels a pending request or ends an approved one early.
pub fn cancel(
    conn: &mut impl Transact,
    policy: &Policy,
    requester: &User,
    id: &RequestId,
    source: &str,
    now: DateTime<Utc>,
) -> Result<AccessRequest, WorkflowError> {
    let actor = Actor::user(requester, source);
    decide(conn, policy, (&actor, "request.cancel"), id, now, |_, r| {
        if r.requester != requester.identity {
            // Someone else's request: say nothing about it.
            return Err(WorkflowError::NotFound);
        }
        r.cancel(&requester.identity, now)?;
        let why = "cancelled by the requester".to_owned();
        Ok(Decided {
            value: (),
            why,
            event: Some("request.cancelled"),
            reapproval: None,
        })
    })
    .map(|(r, ())| r)
}

/// An approver of the role revokes an approved request: its window ends now,
/// no further certificate is issued for it, and the certificates already
/// issued are revoked (KRL, bastion feed).
pub fn revoke(
    conn: &mut impl Transact,
    policy: &Policy,
    by: &User,
    id: &RequestId,
    comment: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<AccessRequest, WorkflowError> {
    let actor = Actor::user(by, source);
    decide(conn, policy, (&actor, "request.revoke"), id, now, |_, r| {
        if can_view(policy, by, r).is_none() {
            return Err(WorkflowError::NotFound);
        }
        if role_approver(policy, by, r).is_none() {
            return Err(refused(
                Refusal::NotApprover,
                format!("only approvers of role {} may revoke its grants", r.role),
            ));
        }
        r.revoke(&by.identity, comment, now)?;
        let why = r.comment.clone().unwrap_or_else(|| "revoked".to_owned());
        Ok(Decided {
            value: (),
            why,
            event: Some("request.revoked"),
            reapproval: None,
        })
    })
    .map(|(r, ())| r)
}

/// Expires due pending requests (a bounded batch, 50 per transaction, each
/// re-read and re-checked inside it). Returns how many.
pub fn expire_due(
    conn: &mut impl Transact,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<usize, WorkflowError> {
    let due = requests::due_for_expiry(conn, now, 500)?;
    crate::store::engine::write_chunks(conn, &due, 50, |tx, id| {
        let Some(mut r) = requests::load(tx, id)? else {
            return Ok::<_, WorkflowError>(false);
        };
        let stored = r.approvals.len();
        expire_in(tx, policy, &mut r, stored, now)
    })
}

/// How `user` may see `request` (its requester, or an approver of its role), if at all.
pub fn can_view(policy: &Policy, user: &User, request: &AccessRequest) -> Option<Viewer> {
    Viewer::of(policy, user, request)
}

/// Loads a request for its web page: the requester, approvers of its role, and
/// administrators (`admin`) may see it.
pub fn get_for_page(
    conn: &impl Sql,
    policy: &Policy,
    user: &User,
    admin: Option<Admin>,
    id: &RequestId,
) -> Result<AccessRequest, WorkflowError> {
    match requests::load(conn, id)? {
        Some(r) if admin.is_some() || can_view(policy, user, &r).is_some() => Ok(r),
        _ => Err(WorkflowError::NotFound),
    }
}

/// The approver capability of `user` for the request's role (any stage group), if any.
pub fn role_approver(policy: &Policy, user: &User, request: &AccessRequest) -> Option<Approver> {
    Approver::of(policy, user, request)
}

/// Loads a request the caller may see.
pub fn get(
    conn: &impl Sql,
    policy: &Policy,
    user: &User,
    id: &RequestId,
) -> Result<AccessRequest, WorkflowError> {
    match requests::load(conn, id)? {
        Some(r) if can_view(policy, user, &r).is_some() => Ok(r),
        _ => Err(WorkflowError::NotFound),
    }
}

/// Whether `user` may decide `request` now: it is pending and not expired,
/// it is not theirs, they are in the group of its open stage, and they have
/// not approved it yet. The rules themselves are re-checked by [`approve`]
/// and [`deny`]; this only decides what to offer.
pub fn may_decide(policy: &Policy, user: &User, r: &AccessRequest, now: DateTime<Utc>) -> bool {
    r.state == RequestState::Pending
        && now < r.pending_until
        && !r.is_requester(user, policy.people())
        && policy
            .role(&r.role)
            .is_some_and(|role| match r.open_stage(role) {
                Some((stage, _)) => role
                    .stages
                    .get(stage)
                    .is_some_and(|s| user.in_group(&s.group)),
                None => false,
            })
        && !r.approvals.iter().any(|a| {
            a.approver == user.identity
                || policy
                    .people()
                    .same_person(&a.approver_username, &user.username)
        })
}

/// The requests `user` may decide now, oldest first.
pub fn inbox(
    conn: &impl Sql,
    policy: &Policy,
    user: &User,
    now: DateTime<Utc>,
) -> Result<Vec<AccessRequest>, WorkflowError> {
    let pending = requests::list(conn, requests::Listing::Pending, 500)?;
    Ok(pending
        .into_iter()
        .filter(|r| may_decide(policy, user, r, now))
        .collect())
}
