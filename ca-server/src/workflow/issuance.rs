//! Certificates for approved requests: the issuance writer's batch of jobs
//! in one transaction, every rule re-checked on each request as read there.
//!
//! The batch reads its requests together, draws its serials together, chains
//! its audit events in memory and writes events and certificate rows
//! together: a constant number of statements per batch instead of eight per
//! certificate, which is what matters on PostgreSQL, where each is a round
//! trip made while holding the writers' lock (issue 15). When a statement
//! refuses a row (a constraint, a trigger), the batch is redone one job per
//! savepoint, so the failure stays with its job.

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use serde_json::json;
use tpa_core::audit::{NewEvent, Outcome};
use tpa_core::{
    AccessRequest, ApprovedScope, Approvers, Policy, RequestId, Revalidation, SubjectKey, User,
};

use super::error::{WorkflowError, refused};
use super::requests::reapproval_event;
use super::undelivered::Undelivered;
use super::{Actor, Issued, Signed};
use crate::auth::identity::Identities;
use crate::refusal::Refusal;
use crate::signer::Signer;
use crate::store::Transact;
use crate::store::audit::Appender;
use crate::store::engine::Tx;
use crate::store::{self, MaybeFault, StoreError, certificates, requests};

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
/// Each job re-checks everything on its request as read in the transaction
/// (`certificate_scope`): a refused job keeps only its `denied` audit event;
/// a job whose storage step fails is rolled back alone and answered with that
/// error. If the transaction itself fails, or the commit does, the whole
/// batch is rolled back (or, when the connection broke after COMMIT was
/// sent, its outcome is unknown: see [`issue_batch_reporting`]) and every
/// job gets an error. No job's certificate is returned before the commit,
/// and the audit chain stays sequential (the jobs' events follow each other
/// in the order of `jobs`).
pub fn issue_batch(
    conn: &mut impl Transact,
    deps: (&Signer, &Policy, &Identities),
    jobs: &[IssueJob],
    now: DateTime<Utc>,
) -> Vec<Result<Issued, WorkflowError>> {
    issue_batch_reporting(conn, deps, jobs, now).0
}

/// [`issue_batch`], also naming the certificates signed in a batch whose
/// COMMIT outcome is unknown: every job ran and COMMIT was sent, but its
/// answer was lost or could not be read (on PostgreSQL; SQLite's COMMIT
/// always answers). Their callers get an error like any failed batch; the
/// issuance writer records those that did commit as issued, not delivered
/// ([`undelivered::record`](super::undelivered::record)).
pub fn issue_batch_reporting(
    conn: &mut impl Transact,
    deps: (&Signer, &Policy, &Identities),
    jobs: &[IssueJob],
    now: DateTime<Utc>,
) -> (Vec<Result<Issued, WorkflowError>>, Vec<Undelivered>) {
    let ended = match attempt(conn, deps, jobs, Serials::Unchecked, now) {
        // A statement refused a row (a constraint, a trigger, a serial
        // drawn before): the batch again in a new transaction, one job per
        // savepoint, so the job it belongs to fails and its batch-mates are
        // issued. Only while no job's certificate is signed (`None`): once
        // every job ran, only the COMMIT was left, and it may have
        // committed. A condition (the
        // deadline, a lost connection, a full disk) would fail every job
        // alike: the batch fails at once.
        Err((WorkflowError::Storage(e), None)) if e.fault().is_none() => {
            tracing::warn!(
                error = format!("{e:#}"),
                jobs = jobs.len(),
                "issuance batch: a statement failed; issuing job by job"
            );
            attempt(conn, deps, jobs, Serials::Checked, now)
        }
        ended => ended,
    };
    match ended {
        Ok(results) => (results, Vec::new()),
        Err((e, signed)) => failed_batch(jobs, &e, signed),
    }
}

/// Each job's answer, in the order of the jobs.
type Answers = Vec<Result<Issued, WorkflowError>>;

/// One transaction for the batch: all jobs together ([`Serials::Unchecked`])
/// or each in its own savepoint ([`Serials::Checked`]). A failure comes with
/// the certificates signed when only the COMMIT was left.
fn attempt(
    conn: &mut impl Transact,
    deps: (&Signer, &Policy, &Identities),
    jobs: &[IssueJob],
    serials: Serials,
    now: DateTime<Utc>,
) -> Result<Answers, (WorkflowError, Option<Vec<Undelivered>>)> {
    // Filled once every job ran: only the COMMIT is left after that.
    let signed: RefCell<Option<Vec<Undelivered>>> = RefCell::new(None);
    let committed = conn.write(|tx| {
        // The writers' lock before any read (PostgreSQL; SQLite's writer
        // already excludes every other write). Every change to a request (a
        // decision, a revocation, a cancellation) holds it until it
        // commits: taken first, it makes the batch read each request either
        // before such a change began or after it committed, never a stale
        // copy that a revocation on another replica committed over between
        // the read and the certificate (issue 15).
        store::audit::lock_chain(tx)?;
        // Once per batch: another replica may have revoked this replica's
        // signing key (a key rotation) since it started; signing with it
        // would hand out certificates every host refuses.
        let key_revoked = match super::revocation::check_signing_key(tx, &deps.0.fingerprint()) {
            Ok(()) => None,
            Err(WorkflowError::Refused { code, message }) => Some((code, message)),
            Err(e) => return Err(e),
        };
        let key_revoked = key_revoked.as_ref();
        let results = match serials {
            Serials::Unchecked => run(tx, deps, jobs, serials, key_revoked, now)?,
            Serials::Checked => {
                let mut results = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let one = std::slice::from_ref(job);
                    let alone = tx.savepoint(|tx| run(tx, deps, one, serials, key_revoked, now))?;
                    results.push(match alone {
                        Ok(answer) => answer.into_iter().next().unwrap_or_else(|| {
                            Err(StoreError::Corrupt("a job ran without an answer".into()).into())
                        }),
                        Err(e) => Err(e.into()),
                    });
                }
                results
            }
        };
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
    committed.map_err(|e| (e, signed.into_inner()))
}

/// The answers of a batch whose transaction failed, and the certificates
/// whose commit is unknown: every job ran, so the failure came at COMMIT,
/// without the server's answer (a broken connection, an answer the client
/// could not read), and the server may have committed. Those that did are
/// marked issued, not delivered; [`undelivered::record`](super::undelivered::record)
/// finds which by their rows.
fn failed_batch(
    jobs: &[IssueJob],
    e: &WorkflowError,
    signed: Option<Vec<Undelivered>>,
) -> (Vec<Result<Issued, WorkflowError>>, Vec<Undelivered>) {
    let unknown = match (e, signed) {
        (WorkflowError::Storage(store), Some(signed)) if store.commit_outcome_unknown() => signed,
        _ => Vec::new(),
    };
    if !unknown.is_empty() {
        let serials: Vec<&str> = unknown.iter().map(|u| u.serial.as_str()).collect();
        tracing::warn!(
            jobs = jobs.len(),
            serials = serials.join(","),
            "issuance batch: COMMIT was sent but its answer was lost, so its outcome \
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
    // An answer lost or unreadable is the database out of reach: 503, as a
    // broken connection is, never a bare 500.
    let fault = e.fault().or_else(|| {
        matches!(e, WorkflowError::Storage(s) if s.commit_outcome_unknown())
            .then_some(crate::store::Fault::Unreachable)
    });
    let error = || match fault {
        Some(fault) => StoreError::Condition(fault),
        None => StoreError::Aborted(format!("issuance batch rolled back: {e}")),
    };
    let results = jobs
        .iter()
        .map(|_| Err(WorkflowError::Storage(error())))
        .collect();
    (results, unknown)
}

/// Runs `jobs` in order inside the caller's transaction: reads their
/// requests together, checks each job, signs those that pass, chains every
/// event in memory, then writes the events and the certificate rows.
/// `Err` is a storage failure: the caller rolls back what this wrote.
fn run(
    tx: &Tx<'_>,
    deps: (&Signer, &Policy, &Identities),
    jobs: &[IssueJob],
    serials: Serials,
    key_revoked: Option<&(Refusal, String)>,
    now: DateTime<Utc>,
) -> Result<Vec<Result<Issued, WorkflowError>>, StoreError> {
    let mut requests = requests::load_many(tx, jobs.iter().map(|j| &j.id))?;
    let serials = match serials {
        Serials::Unchecked => {
            let mut drawn = Vec::with_capacity(jobs.len());
            super::draw_serials(&mut drawn, jobs.len());
            drawn
        }
        Serials::Checked => super::fresh_serials(tx, jobs.len())?,
    };
    let mut chain = Appender::at_head(tx)?;
    let mut rows = Vec::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (job, serial) in jobs.iter().zip(serials) {
        let actor = Actor::user(&job.caller, &job.source);
        let request = requests.get_mut(&job.id);
        let outcome = match check(tx, deps, job, request, key_revoked, &mut chain, now)? {
            Verdict::Issue(scope) => {
                let reason = format!("certificate for request {}", job.id);
                match Signed::new(deps.0, &actor, *scope, &reason, serial, now) {
                    Ok(signed) => {
                        let event = chain.push(&signed.event)?;
                        rows.push(signed.row(event.seq));
                        Ok((signed, event.seq))
                    }
                    // Nothing of this certificate is recorded; what the
                    // re-check of its approvals found is (it holds whether
                    // or not a certificate follows).
                    Err(e) => Err(e.into()),
                }
            }
            Verdict::Refuse(e) => {
                if let Some(event) = denied_event(&actor, &job.id, &e, now) {
                    chain.push(&event)?;
                }
                Err(e)
            }
            Verdict::Unaudited(e) => Err(e),
        };
        outcomes.push(outcome);
    }
    chain.write(tx)?;
    certificates::insert_all(tx, &rows)?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.map(|(signed, seq)| signed.issued(seq)))
        .collect())
}

/// How a run draws its serials, and with them how an attempt runs its jobs.
/// Both are unique for good: the primary key of `certificates` refuses a
/// serial used before.
#[derive(Debug, Clone, Copy)]
enum Serials {
    /// All jobs together; serials random and distinct within the batch,
    /// not looked up (a round trip less inside the writers' lock): a serial
    /// drawn before (with N certificates stored, N chances in 2^64 for each
    /// new one) fails the batch's insert, and the batch is redone job by job.
    Unchecked,
    /// Job by job, each in its own savepoint; serials looked up first, and
    /// drawn again when used before.
    Checked,
}

/// What the rules say of one job.
enum Verdict {
    /// Sign a certificate for this scope.
    Issue(Box<ApprovedScope>),
    /// A rule said no: answered, and audited as denied.
    Refuse(WorkflowError),
    /// Answered without an audit event: no such request at all, or a
    /// directory that cannot be asked now (nothing was decided; retry).
    Unaudited(WorkflowError),
}

/// The issuance rules for one job, on its request as the batch read it and
/// as earlier jobs of the batch left it: owner, the content the policy hook
/// allowed, the signing key, the public key, the approvals as they count
/// now (what stopped counting is removed and recorded, and a grant that no
/// longer holds goes back to pending), then `certificate_scope`.
fn check(
    tx: &Tx<'_>,
    (signer, policy, identities): (&Signer, &Policy, &Identities),
    job: &IssueJob,
    request: Option<&mut AccessRequest>,
    key_revoked: Option<&(Refusal, String)>,
    chain: &mut Appender,
    now: DateTime<Utc>,
) -> Result<Verdict, StoreError> {
    let IssueJob {
        caller,
        id,
        public_key,
        hook_allowed,
        ..
    } = job;
    let Some(r) = request else {
        return Ok(Verdict::Unaudited(WorkflowError::NotFound));
    };
    if r.requester != caller.identity {
        return Ok(Verdict::Refuse(WorkflowError::NotFound));
    }
    if hook_allowed
        .as_ref()
        .is_some_and(|h| *h != r.content_hash())
    {
        return Ok(Verdict::Refuse(refused(
            Refusal::ContentChanged,
            format!("request {id} changed after the policy hook allowed it; ask again"),
        )));
    }
    // The batch found this replica's signing key revoked (issue 15 review).
    if let Some((code, message)) = key_revoked {
        return Ok(Verdict::Refuse(refused(*code, message.clone())));
    }
    let subject = match SubjectKey::parse(public_key, &signer.ca_key_data()) {
        Ok(subject) => subject,
        Err(e) => return Ok(Verdict::Refuse(refused(Refusal::BadPublicKey, e))),
    };
    // The approvers' groups as they are now, asked once, before anything
    // of this job is written: a directory that cannot be asked stops the
    // job with nothing recorded. The approvals that still count after the
    // re-check are a subset of those asked about.
    let current = match super::approvers::current(tx, identities, r) {
        Ok(current) => current,
        Err(WorkflowError::Storage(e)) => return Err(e),
        Err(e) => return Ok(Verdict::Unaudited(e)),
    };
    let ctx = Approvers {
        people: policy.people(),
        current: &current,
    };
    let stored = r.approvals.len();
    let found = match policy.role(&r.role) {
        Some(role) => r.revalidate(role, &ctx, now),
        // No such role any more: `certificate_scope` refuses below.
        None => Revalidation::default(),
    };
    if !found.is_empty() {
        requests::update(tx, r, stored, now)?;
        store::changes::request_changed(tx, &r.id)?;
        chain.push(&reapproval_event(r, &found, now))?;
        if found.reopened.is_some() {
            return Ok(Verdict::Refuse(refused(
                Refusal::NeedsReapproval,
                format!("request {id} needs re-approval because {}", found.why()),
            )));
        }
    }
    Ok(
        match r.certificate_scope(policy.role(&r.role), caller, subject, &ctx, now) {
            Ok(scope) => Verdict::Issue(Box::new(scope)),
            Err(e) => Verdict::Refuse(e.into()),
        },
    )
}

/// The `denied` event of a refused certificate (a refusal with its code,
/// or an unknown request).
fn denied_event(
    actor: &Actor,
    id: &RequestId,
    e: &WorkflowError,
    now: DateTime<Utc>,
) -> Option<NewEvent> {
    let (code, message) = match e {
        WorkflowError::Refused { code, message } => (*code, message.clone()),
        WorkflowError::NotFound => (
            Refusal::NotFound,
            "no such request for this user".to_owned(),
        ),
        _ => return None,
    };
    Some(NewEvent {
        time: now,
        actor: actor.id.clone(),
        source: actor.source.clone(),
        action: "cert.issue".to_owned(),
        object: "cert:none".to_owned(),
        outcome: Outcome::Denied,
        reason: message,
        details: json!({ "code": code.code(), "request_id": id.as_str() }),
    })
}
