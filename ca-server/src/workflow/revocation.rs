//! Revocation by certificate serial, by request, by user and by CA key: one
//! `BEGIN IMMEDIATE` transaction each, with its audit event (who and why), the
//! revoked certificates, the ended grants and a higher KRL version.
//!
//! Revocation is final and idempotent: revoking what is already revoked
//! succeeds, changes nothing and is still audited; nothing un-revokes.
//! Who may revoke is the caller's decision (the HTTP layer's admin check, or
//! the operator running `tpa-ca revoke` on the CA's host).

use crate::refusal::Refusal;
use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use ssh_key::Fingerprint;
use tpa_core::text::{FreeText, TextField};
use tpa_core::{AccessRequest, CertSerial, Identity, Policy, RequestId, RequestState, Username};

use super::Actor;
use super::error::WorkflowError;
use crate::notify;
use crate::store::audited::{Abort, write_audited};
use crate::store::revocations::{Kind, NewRevocation};
use crate::store::sql::Sql;
use crate::store::{self, requests, revocations};
use crate::store::{Transact, Tx};
use tpa_core::audit::{NewEvent, Outcome, format_time};

/// The longest reason accepted.
pub const MAX_REASON: usize = tpa_core::text::MAX_SHORT_REASON;
/// At most this many serials are listed in a revocation's audit event.
const MAX_LISTED: usize = 1000;

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One certificate.
    Serial(CertSerial),
    /// Every certificate of a request; its grant ends now.
    Request(RequestId),
    /// Every open request of a user (pending ones and active grants, ended
    /// now) and every certificate of theirs still valid, break-glass
    /// certificates made for them included. The name is resolved to the
    /// identities known under it, and their requests are covered whatever
    /// username they carry.
    User(Username),
    /// Every certificate signed by the CA key with this SHA-256 fingerprint.
    CaKey(String),
}

impl Target {
    /// Parses `kind` (`serial`, `request`, `user`, `ca_key`) and its value.
    pub fn parse(kind: &str, value: &str) -> Result<Self, WorkflowError> {
        let value = value.trim();
        match kind {
            "serial" => CertSerial::parse(value)
                .map(Target::Serial)
                .map_err(|e| refused(Refusal::BadSerial, e)),
            "request" => RequestId::parse(value)
                .map(Target::Request)
                .map_err(|e| refused(Refusal::BadRequestId, e)),
            "user" => Username::parse(value)
                .map(Target::User)
                .map_err(|e| refused(Refusal::BadUsername, e)),
            "ca_key" | "ca-key" => match Fingerprint::from_str(value) {
                Ok(fp) if fp.sha256().is_some() => Ok(Target::CaKey(fp.to_string())),
                _ => Err(refused(
                    Refusal::BadFingerprint,
                    "a CA key is named by its SHA-256 fingerprint, SHA256:… (ssh-keygen -lf KEY.pub)",
                )),
            },
            other => Err(refused(
                Refusal::BadKind,
                format!(
                    "cannot revoke by {:?}: use serial, request, user or ca_key",
                    other.chars().take(20).collect::<String>()
                ),
            )),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Target::Serial(_) => Kind::Serial,
            Target::Request(_) => Kind::Request,
            Target::User(_) => Kind::User,
            Target::CaKey(_) => Kind::CaKey,
        }
    }

    /// The target as text: the serial, request id, username or fingerprint.
    pub fn value(&self) -> String {
        match self {
            Target::Serial(s) => s.to_string(),
            Target::Request(r) => r.to_string(),
            Target::User(u) => u.as_str().to_owned(),
            Target::CaKey(f) => f.clone(),
        }
    }

    fn object(&self) -> String {
        match self {
            Target::Serial(s) => format!("cert:{s}"),
            Target::Request(r) => format!("request:{r}"),
            Target::User(u) => format!("user:{u}"),
            Target::CaKey(f) => format!("ca_key:{f}"),
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Target::Serial(_) => "cert.revoke",
            Target::Request(_) => "request.revoke",
            Target::User(_) => "user.revoke",
            Target::CaKey(_) => "ca_key.revoke",
        }
    }
}

/// Who revokes: the audit actor and the identity recorded on ended requests.
#[derive(Debug, Clone)]
pub struct Revoker {
    /// Audit actor and source.
    pub actor: Actor,
    /// Recorded as the request's `decided_by`.
    pub identity: Identity,
}

impl Revoker {
    /// An operator running `tpa-ca revoke` (identity `tpa:operator#<name>`).
    pub fn operator(name: &Username) -> Self {
        Self {
            actor: Actor::local_admin(name),
            identity: Identity::new("tpa:operator", name.as_str())
                .unwrap_or_else(|_| Identity::local(name)),
        }
    }

    /// An authenticated user (an administrator) acting from `source`.
    pub fn user(user: &tpa_core::User, source: &str) -> Self {
        Self {
            actor: Actor::user(user, source),
            identity: user.identity.clone(),
        }
    }
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Certificates revoked now (not counting those revoked before).
    pub certificates: usize,
    /// Grants and pending requests ended now.
    pub requests: Vec<String>,
    /// Whether a CA key was revoked now.
    pub ca_key: bool,
    /// True when everything named was already revoked (nothing changed).
    pub already: bool,
    /// The KRL version after it.
    pub krl_version: i64,
    /// The audit event that records it.
    pub audit_seq: i64,
}

fn refused(code: Refusal, message: impl ToString) -> WorkflowError {
    WorkflowError::Refused {
        code,
        message: message.to_string(),
    }
}

/// Checks a revocation reason: required, and one line of free text
/// ([`TextField::ShortReason`]: no control, format or bidi characters).
fn check_reason(reason: &str) -> Result<String, WorkflowError> {
    let reason = FreeText::parse(TextField::ShortReason, reason)
        .map_err(|e| refused(Refusal::from(&e), e.to_string()))?;
    if reason.is_empty() {
        return Err(refused(
            Refusal::ReasonRequired,
            "a revocation needs a reason (--reason \"INC-1234 laptop stolen\")",
        ));
    }
    Ok(reason.into_string())
}

/// A refused reason as the audit event keeps it: what the rule forbids
/// replaced, so that the trail never holds terminal escapes.
fn shown_reason(reason: &str) -> String {
    tpa_core::text::printable(reason.trim(), false, MAX_REASON)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one audit event, every field named"
)]
fn audit(
    tx: &impl Sql,
    by: &Revoker,
    target: &Target,
    outcome: Outcome,
    reason: &str,
    details: Value,
    now: DateTime<Utc>,
) -> Result<i64, WorkflowError> {
    Ok(store::audit::append(
        tx,
        &NewEvent {
            time: now,
            actor: by.actor.id.clone(),
            source: by.actor.source.clone(),
            action: target.action().to_owned(),
            object: target.object(),
            outcome,
            reason: reason.to_owned(),
            details,
        },
    )?
    .seq)
}

/// Ends an active grant inside `tx`: the state machine's `revoke`, the row and
/// its webhook notification (the caller appends the audit event). False when
/// the grant was not active.
fn end_grant(
    tx: &impl Sql,
    policy: &Policy,
    by: &Revoker,
    r: &mut AccessRequest,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, WorkflowError> {
    let active = r.state == RequestState::Approved && r.window.is_some_and(|w| now < w.end);
    if !active {
        return Ok(false);
    }
    let stored = r.approvals.len();
    r.revoke(&by.identity, reason, now)?;
    requests::update(tx, r, stored, now)?;
    store::changes::request_changed(tx, &r.id)?;
    notify::enqueue_request_event(tx, "request.revoked", r, policy, now)?;
    Ok(true)
}

/// Ends a pending request of a revoked user inside `tx`, so that no approval
/// arriving later grants it (the caller appends the audit event). False when
/// the request is not pending, or its pending time is over (it expires).
fn end_pending(
    tx: &impl Sql,
    policy: &Policy,
    by: &Revoker,
    r: &mut AccessRequest,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, WorkflowError> {
    if r.state != RequestState::Pending || now >= r.pending_until {
        return Ok(false);
    }
    let stored = r.approvals.len();
    r.revoke_pending(&by.identity, reason, now)?;
    requests::update(tx, r, stored, now)?;
    store::changes::request_changed(tx, &r.id)?;
    notify::enqueue_request_event(tx, "request.revoked", r, policy, now)?;
    Ok(true)
}

/// Revokes `target` as `by`, because of `reason`. A refusal (bad reason,
/// unknown certificate or request, the signing key) commits only its `denied`
/// audit event. `signing_key` is the fingerprint of the CA's current signing
/// key, which cannot be revoked while it signs (rotate first).
pub fn revoke(
    conn: &mut impl Transact,
    policy: &Policy,
    by: &Revoker,
    target: &Target,
    reason: &str,
    signing_key: &str,
    now: DateTime<Utc>,
) -> Result<Revoked, WorkflowError> {
    write_audited(conn, |tx| {
        let run = Revocation {
            tx,
            policy,
            by,
            target,
            given_reason: reason,
            now,
        };
        run.revoke(signing_key)
    })
}

/// Refuses a signing key that was revoked (`tpa-ca revoke ca-key`): every
/// certificate it signs is refused by the hosts and bastions, and `/ca.pub`
/// leaves it out. `tpa-ca serve` and `tpa-ca issue` call this before signing
/// anything, so a revoked key configured again fails closed, with a clear
/// error.
pub fn check_signing_key(conn: &impl Sql, signing_key: &str) -> Result<(), WorkflowError> {
    if revocations::revoked_ca_keys(conn)?
        .iter()
        .any(|k| k == signing_key)
    {
        return Err(refused(
            Refusal::SigningKeyRevoked,
            format!(
                "the CA signing key {signing_key} (ca.key_file) was revoked and can never sign \
                 again: configure a new key (ssh-keygen -t ed25519 -f FILE, then ca.key_file; \
                 see key rotation in docs/configuration.md)"
            ),
        ));
    }
    Ok(())
}

/// Records that `by` was refused a revocation of `target` before it ran (the
/// caller is not an administrator): a `denied` audit event with the refusal
/// `code` and `message` and the reason given, nothing else.
pub fn audit_refusal(
    conn: &mut impl Transact,
    by: &Revoker,
    target: &Target,
    code: Refusal,
    message: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), WorkflowError> {
    conn.write(|tx| {
        let shown = shown_reason(reason);
        audit(
            tx,
            by,
            target,
            Outcome::Denied,
            message,
            json!({ "code": code.code(), "reason": shown }),
            now,
        )?;
        Ok(())
    })
}

/// One revocation inside its transaction.
struct Revocation<'a, 't> {
    tx: &'a Tx<'t>,
    policy: &'a Policy,
    by: &'a Revoker,
    target: &'a Target,
    /// The reason as given (a refusal's audit event shows it, made printable).
    given_reason: &'a str,
    now: DateTime<Utc>,
}

/// What a revocation covers: grants and pending requests it ended, the
/// certificates, the CA key, and how many logins it ended.
#[derive(Default)]
struct Covered {
    ended: Vec<AccessRequest>,
    serials: Vec<String>,
    ca_key: Option<String>,
    logins: usize,
}

impl Revocation<'_, '_> {
    /// Checks the reason, finds what `target` covers and ends it, records the
    /// revocation. A refusal found before anything is written keeps only its
    /// `denied` event ([`Revocation::refuse`]); any other error, a state
    /// machine refusal while ending a grant included, rolls back.
    fn revoke(&self, signing_key: &str) -> Result<Revoked, Abort<WorkflowError>> {
        let reason = check_reason(self.given_reason).map_err(|e| self.refuse(e))?;
        let reason = reason.as_str();
        let mut covered = match self.target {
            Target::Serial(serial) => self.serial(serial)?,
            Target::Request(id) => self.request(id, reason)?,
            Target::User(name) => self.user(name, reason)?,
            Target::CaKey(fingerprint) => self.ca_key(fingerprint, signing_key)?,
        };
        // Linked usernames can name one certificate twice; keep the first.
        let mut seen = std::collections::BTreeSet::new();
        covered.serials.retain(|s| seen.insert(s.clone()));
        Ok(self.record(reason, covered)?)
    }

    /// Appends the `denied` event of a refusal and answers with it, kept; any
    /// other error (or a failure to write the event) rolls back.
    fn refuse(&self, e: WorkflowError) -> Abort<WorkflowError> {
        let WorkflowError::Refused { code, message } = e else {
            return Abort::Failed(e);
        };
        let details = json!({ "code": code.code(), "reason": shown_reason(self.given_reason) });
        match audit(
            self.tx,
            self.by,
            self.target,
            Outcome::Denied,
            &message,
            details,
            self.now,
        ) {
            Ok(_) => Abort::Refused(WorkflowError::Refused { code, message }),
            Err(failed) => Abort::Failed(failed),
        }
    }

    fn serial(&self, serial: &CertSerial) -> Result<Covered, Abort<WorkflowError>> {
        let serial = serial.to_string();
        if revocations::certificate(self.tx, &serial)?.is_none() {
            return Err(self.refuse(refused(
                Refusal::NotFound,
                format!("no certificate with serial {serial} was issued by this CA"),
            )));
        }
        Ok(Covered {
            serials: vec![serial],
            ..Covered::default()
        })
    }

    fn request(&self, id: &RequestId, reason: &str) -> Result<Covered, Abort<WorkflowError>> {
        let Some(mut r) = requests::load(self.tx, id)? else {
            return Err(self.refuse(refused(Refusal::NotFound, format!("no request {id}"))));
        };
        if r.state == RequestState::Pending {
            return Err(self.refuse(refused(
                Refusal::NotActive,
                format!("request {id} is pending: deny it instead"),
            )));
        }
        let mut covered = Covered::default();
        if end_grant(self.tx, self.policy, self.by, &mut r, reason, self.now)? {
            covered.ended.push(r);
        }
        covered.serials = revocations::certificates_of_request(self.tx, id.as_str())?
            .into_iter()
            .map(|c| c.serial)
            .collect();
        Ok(covered)
    }

    /// One person: every identity known under the name, and under every
    /// username `[[identity_links]]` joins to it (the same rule separation of
    /// duties uses, `People`).
    fn user(&self, name: &Username, reason: &str) -> Result<Covered, WorkflowError> {
        let (tx, now) = (self.tx, self.now);
        let mut covered = Covered::default();
        for name in self.policy.people().usernames_of(name) {
            for id in revocations::open_requests_of_user(tx, name.as_str(), &format_time(now))? {
                let id = RequestId::parse(&id)
                    .map_err(|e| store::StoreError::Corrupt(format!("request id: {e}")))?;
                if let Some(mut r) = requests::load(tx, &id)?
                    && (end_pending(tx, self.policy, self.by, &mut r, reason, now)?
                        || end_grant(tx, self.policy, self.by, &mut r, reason, now)?)
                {
                    covered.ended.push(r);
                }
            }
            covered.serials.extend(
                revocations::live_certificates_of_user(tx, name.as_str(), now.timestamp())?
                    .into_iter()
                    .map(|c| c.serial),
            );
            // Their web sessions and API tokens end too, so a revoked user
            // cannot go on approving, requesting or reading.
            covered.logins +=
                revocations::revoke_logins_of_user(tx, name.as_str(), &format_time(now))?;
        }
        Ok(covered)
    }

    fn ca_key(
        &self,
        fingerprint: &str,
        signing_key: &str,
    ) -> Result<Covered, Abort<WorkflowError>> {
        if fingerprint == signing_key {
            return Err(self.refuse(refused(
                Refusal::SigningKey,
                "this is the CA's current signing key: make another key the signing key \
                 (ca.key_file) and restart first, then revoke this one",
            )));
        }
        Ok(Covered {
            serials: revocations::live_certificates_of_ca(
                self.tx,
                fingerprint,
                self.now.timestamp(),
            )?
            .into_iter()
            .map(|c| c.serial)
            .collect(),
            ca_key: Some(fingerprint.to_owned()),
            ..Covered::default()
        })
    }

    /// The audit events (the revocation's, and one per ended request), the
    /// revocation row, the revoked certificates and CA key, a higher KRL version.
    fn record(&self, reason: &str, covered: Covered) -> Result<Revoked, WorkflowError> {
        let (tx, by, target, now) = (self.tx, self.by, self.target, self.now);
        let Covered {
            ended,
            serials,
            ca_key,
            logins,
        } = covered;
        let requests: Vec<String> = ended.iter().map(|r| r.id.to_string()).collect();
        // The serials covered (the first MAX_LISTED; `revoked_certificates` holds them all).
        let details = json!({
            "kind": target.kind().as_str(),
            "target": target.value(),
            "requests_ended": requests,
            "certificates": serials.len(),
            "serials": serials.iter().take(MAX_LISTED).collect::<Vec<_>>(),
            "serials_truncated": serials.len() > MAX_LISTED,
            "logins_revoked": logins,
        });
        let seq = audit(tx, by, target, Outcome::Success, reason, details, now)?;
        // Each ended grant also gets its own event on the request, so its
        // timeline (and the bastions' feed) sees it.
        if !matches!(target, Target::Request(_)) {
            for r in &ended {
                store::audit::append(tx, &ended_event(by, target, r, reason, now))?;
            }
        }
        let at = format_time(now);
        let id = revocations::insert(
            tx,
            &NewRevocation {
                kind: target.kind(),
                target: &target.value(),
                reason,
                revoked_by: &by.actor.id,
                revoked_at: &at,
                audit_seq: seq,
            },
        )?;
        let certificates = revocations::revoke_certificates(tx, id, &serials)?;
        let ca_key = match ca_key {
            Some(fp) => revocations::revoke_ca_key(tx, id, &fp)?,
            None => false,
        };
        let krl_version = revocations::bump_krl_version(tx)?;
        Ok(Revoked {
            certificates,
            already: certificates == 0 && ended.is_empty() && !ca_key && logins == 0,
            requests,
            ca_key,
            krl_version,
            audit_seq: seq,
        })
    }
}

/// The event on a request that a revocation by user or CA key ended.
fn ended_event(
    by: &Revoker,
    target: &Target,
    r: &AccessRequest,
    reason: &str,
    now: DateTime<Utc>,
) -> NewEvent {
    NewEvent {
        time: now,
        actor: by.actor.id.clone(),
        source: by.actor.source.clone(),
        action: "request.revoke".to_owned(),
        object: format!("request:{}", r.id),
        outcome: Outcome::Success,
        reason: reason.to_owned(),
        details: json!({ "by": target.object(), "state": r.state.as_str() }),
    }
}

/// Records that a request decision (an approver's revoke, a requester's
/// cancel) ended grant `r` because of `reason`: its certificates are revoked
/// under the decision's audit event `seq`, and the KRL version grows.
pub(crate) fn record_request_end(
    tx: &impl Sql,
    r: &AccessRequest,
    reason: &str,
    revoked_by: &str,
    seq: i64,
    now: DateTime<Utc>,
) -> Result<(), WorkflowError> {
    let at = format_time(now);
    let id = revocations::insert(
        tx,
        &NewRevocation {
            kind: Kind::Request,
            target: r.id.as_str(),
            reason,
            revoked_by,
            revoked_at: &at,
            audit_seq: seq,
        },
    )?;
    let serials: Vec<String> = revocations::certificates_of_request(tx, r.id.as_str())?
        .into_iter()
        .map(|c| c.serial)
        .collect();
    revocations::revoke_certificates(tx, id, &serials)?;
    revocations::bump_krl_version(tx)?;
    Ok(())
}
