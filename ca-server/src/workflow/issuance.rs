//! Certificates for approved requests: the issuance writer's batch of jobs,
//! one savepoint each inside one transaction, every rule re-checked on the
//! request as re-read there.

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use serde_json::json;
use tpa_core::audit::{NewEvent, Outcome};
use tpa_core::{Approvers, Policy, RequestId, SubjectKey, User};

use super::error::{WorkflowError, refused};
use super::requests::{reapproval_event, revalidate_in};
use super::undelivered::Undelivered;
use super::{Actor, Issued, issue_in};
use crate::auth::identity::Identities;
use crate::refusal::Refusal;
use crate::signer::Signer;
use crate::store::Transact;
use crate::store::audited::{Abort, savepoint_audited};
use crate::store::sql::Sql;
use crate::store::{self, Fault, MaybeFault, StoreError, requests};

/// One certificate request: who asks, for which request, for which key.
#[derive(Debug, Clone)]
pub struct IssueJob {
    /// The caller, as authenticated now.
    pub caller: User,
    /// The request the certificate is for.
    pub id: RequestId,
    /// The public key text to certify.
    pub public_key: String,
    /// The content hash the policy hook allowed, when it was asked: the
    /// certificate is refused if the request changed since.
    pub hook_allowed: Option<String>,
    /// The audit source (client address).
    pub source: String,
}

/// Issues certificates for `jobs` in ONE `BEGIN IMMEDIATE` transaction with
/// one commit (group commit); answers come back in the order of `jobs`.
///
/// Each job runs inside its own savepoint and re-reads the request and
/// re-checks everything (`certificate_scope`): a refused job keeps only its `denied` audit event;
/// a job whose storage or signing step fails is rolled back alone and answered
/// with that error. If the savepoint machinery or the commit fails, the whole
/// batch is rolled back (or, when the connection broke after COMMIT was
/// sent, its outcome is unknown: see [`issue_batch_reporting`]) and every
/// job gets an error. No job's certificate is
/// returned before the commit, and the audit chain stays sequential (each job
/// appends after the previous one inside the same transaction).
pub fn issue_batch(
    conn: &mut impl Transact,
    deps: (&Signer, &Policy, &Identities),
    jobs: &[IssueJob],
    now: DateTime<Utc>,
) -> Vec<Result<Issued, WorkflowError>> {
    issue_batch_reporting(conn, deps, jobs, now).0
}

/// [`issue_batch`], also naming the certificates signed in a batch whose
/// COMMIT outcome is unknown: every job ran and COMMIT was sent, but the
/// connection broke before its answer (on PostgreSQL; SQLite's COMMIT
/// always answers). Their callers get an error like any failed batch; the
/// issuance writer records those that did commit as issued, not delivered
/// ([`undelivered::record`](super::undelivered::record)).
pub fn issue_batch_reporting(
    conn: &mut impl Transact,
    (signer, policy, identities): (&Signer, &Policy, &Identities),
    jobs: &[IssueJob],
    now: DateTime<Utc>,
) -> (Vec<Result<Issued, WorkflowError>>, Vec<Undelivered>) {
    // Filled once every job ran: only the COMMIT is left after that.
    let signed: RefCell<Option<Vec<Undelivered>>> = RefCell::new(None);
    let committed = conn.write(|tx| {
        // The audit chain's lock before any read (PostgreSQL; SQLite's
        // writer already excludes every other write). Every change to a
        // request (a decision, a revocation, a cancellation) appends its
        // audit event in its own transaction and so holds this lock until
        // it commits: taken first, it makes the batch read each request
        // either before such a change began or after it committed, never a
        // stale copy that a revocation on another replica committed over
        // between the read and the certificate (issue 15).
        store::audit::lock_chain(tx)?;
        // Once per batch: another replica may have revoked this replica's
        // signing key (a key rotation) since it started; signing with it
        // would hand out certificates every host refuses.
        let key_revoked = match super::revocation::check_signing_key(tx, &signer.fingerprint()) {
            Ok(()) => false,
            Err(WorkflowError::Refused { .. }) => true,
            Err(e) => return Err(e),
        };
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(savepoint_audited(tx, |tx| {
                issue_for_request_in(tx, (signer, policy, identities), job, key_revoked, now)
            })?);
        }
        *signed.borrow_mut() = Some(
            jobs.iter()
                .zip(&results)
                .filter_map(|(job, r)| {
                    r.as_ref().ok().map(|issued| Undelivered {
                        serial: issued.serial.to_string(),
                        request_id: job.id.to_string(),
                    })
                })
                .collect(),
        );
        Ok::<_, WorkflowError>(results)
    });
    match committed {
        Ok(results) => (results, Vec::new()),
        Err(e) => {
            // A broken connection at COMMIT: the server may have committed.
            let unknown = match (e.fault(), signed.into_inner()) {
                (Some(Fault::Unreachable), Some(signed)) => signed,
                _ => Vec::new(),
            };
            if !unknown.is_empty() {
                let serials: Vec<&str> = unknown.iter().map(|u| u.serial.as_str()).collect();
                tracing::warn!(
                    jobs = jobs.len(),
                    serials = serials.join(","),
                    "issuance batch: the connection broke after COMMIT was sent, so its outcome \
                     is unknown; no certificate of it was returned (any that committed are issued, \
                     not delivered)"
                );
            } else {
                match e.fault() {
                    Some(fault) => tracing::warn!(
                        cause = fault.name(),
                        jobs = jobs.len(),
                        "issuance batch rolled back ({fault}); no certificate of it was issued"
                    ),
                    None => tracing::error!(
                        error = format!("{e:#}"),
                        jobs = jobs.len(),
                        "issuance batch rolled back; no certificate of it was issued"
                    ),
                }
            }
            let error = || match e.fault() {
                Some(fault) => StoreError::Condition(fault),
                None => StoreError::Aborted(format!("issuance batch rolled back: {e}")),
            };
            let results = jobs
                .iter()
                .map(|_| Err(WorkflowError::Storage(error())))
                .collect();
            (results, unknown)
        }
    }
}

/// The issuance rules inside the caller's write transaction: re-read the
/// request, check owner, key and `certificate_scope`, sign, record. A refusal
/// keeps its `denied` audit event ([`Abort::Refused`]); a storage or signing
/// failure rolls the job back.
fn issue_for_request_in(
    tx: &impl Sql,
    (signer, policy, identities): (&Signer, &Policy, &Identities),
    job: &IssueJob,
    key_revoked: bool,
    now: DateTime<Utc>,
) -> Result<Issued, Abort<WorkflowError>> {
    let IssueJob {
        caller,
        id,
        public_key,
        hook_allowed,
        ..
    } = job;
    let actor = Actor::user(caller, &job.source);
    let Some(mut r) = requests::load(tx, id)? else {
        return Err(Abort::Refused(WorkflowError::NotFound));
    };
    let refuse = |e: WorkflowError| deny_issue(tx, &actor, id, e, now);
    if r.requester != caller.identity {
        return Err(refuse(WorkflowError::NotFound));
    }
    if hook_allowed
        .as_ref()
        .is_some_and(|h| *h != r.content_hash())
    {
        return Err(refuse(refused(
            Refusal::ContentChanged,
            format!("request {id} changed after the policy hook allowed it; ask again"),
        )));
    }
    // The batch found this replica's signing key revoked (issue 15 review):
    // each job is refused, and audited, with the key check's own message.
    if key_revoked {
        super::revocation::check_signing_key(tx, &signer.fingerprint()).map_err(refuse)?;
    }
    let subject = SubjectKey::parse(public_key, &signer.ca_key_data())
        .map_err(|e| refuse(refused(Refusal::BadPublicKey, e)))?;
    // Every counted approval must still come from a current member of its
    // stage's group, for the stage as defined now; what stopped counting is
    // removed, and a grant that no longer holds goes back to pending (kept
    // with the refusal).
    let stored = r.approvals.len();
    let found = revalidate_in(tx, policy, identities, &mut r, now)?;
    if !found.is_empty() {
        requests::update(tx, &r, stored, now)?;
        store::changes::request_changed(tx, &r.id)?;
        store::audit::append(tx, &reapproval_event(&r, &found, now))?;
        if found.reopened.is_some() {
            return Err(refuse(refused(
                Refusal::NeedsReapproval,
                format!("request {id} needs re-approval because {}", found.why()),
            )));
        }
    }
    let current = super::approvers::current(tx, identities, &r)?;
    let ctx = Approvers {
        people: policy.people(),
        current: &current,
    };
    let scope = r
        .certificate_scope(policy.role(&r.role), caller, subject, &ctx, now)
        .map_err(|e| refuse(e.into()))?;
    let reason = format!("certificate for request {}", r.id);
    Ok(issue_in(tx, signer, &actor, scope, &reason, now)?)
}

/// Appends the `denied` event of a refused certificate and answers with the
/// refusal, kept; when the event cannot be written, the job fails instead.
fn deny_issue(
    tx: &impl Sql,
    actor: &Actor,
    id: &RequestId,
    e: WorkflowError,
    now: DateTime<Utc>,
) -> Abort<WorkflowError> {
    let (code, message) = match &e {
        WorkflowError::Refused { code, message } => (*code, message.clone()),
        WorkflowError::NotFound => (
            Refusal::NotFound,
            "no such request for this user".to_owned(),
        ),
        _ => return Abort::Refused(e),
    };
    let ev = NewEvent {
        time: now,
        actor: actor.id.clone(),
        source: actor.source.clone(),
        action: "cert.issue".to_owned(),
        object: "cert:none".to_owned(),
        outcome: Outcome::Denied,
        reason: message,
        details: json!({ "code": code.code(), "request_id": id.as_str() }),
    };
    match store::audit::append(tx, &ev) {
        Ok(_) => Abort::Refused(e),
        Err(failed) => Abort::Failed(failed.into()),
    }
}
