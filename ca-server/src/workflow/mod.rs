//! Use cases that join the store, the rules of `tpa-core` and the signer.
//! Access requests (submit, decide, issue) live in `workflow/requests.rs`.
//!
//! Issuance is one `BEGIN IMMEDIATE` transaction: pick an unused serial, sign,
//! append the audit event, insert the certificate row, commit. The certificate
//! leaves this module only after the commit succeeded; any failure before that
//! returns an error and no certificate.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use ssh_key::{Certificate, HashAlg};
use tpa_core::{
    ApprovedScope, CertOrigin, CertSerial, CertTemplate, CriticalOptions, Extension, ForceCommand,
    HumanDuration, Principal, SourceAddresses, SubjectKey, Username,
};

pub mod approvers;
pub mod audit_views;
pub mod bastion;
pub mod capability;
pub mod db;
pub mod deadline;
pub mod error;
pub mod explain;
pub mod grants;
pub mod hook_refusals;
pub mod integrations;
pub mod issuance;
pub mod issuer;
pub mod krl;
pub mod policy_gate;
pub mod report;
pub mod requests;
pub mod reviews;
pub mod revocation;
pub mod service;
pub mod undelivered;

use crate::config::AdminIssueConfig;
use crate::signer::{Signer, SignerError};
use crate::store::Transact;
use crate::store::sql::Sql;
use crate::store::{self, StoreError, certificates};
use tpa_core::audit::{NewEvent, Outcome, format_time};

/// Who is acting, as the audit trail names them.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Audit actor, e.g. `admin:root`.
    pub id: String,
    /// Audit source, e.g. `cli`.
    pub source: String,
}

impl Actor {
    /// An authenticated user acting from `source` (a client address or `web`).
    pub fn user(user: &tpa_core::User, source: &str) -> Self {
        Self {
            id: format!("user:{}", user.identity),
            source: source.to_owned(),
        }
    }

    /// An administrator running `tpa-ca` locally. The name is what the operator
    /// claims; the source records the operating-system uid that ran the command.
    pub fn local_admin(name: &Username) -> Self {
        let uid = rustix::process::geteuid().as_raw();
        Self {
            id: format!("admin:{name}"),
            source: format!("cli:uid={uid}"),
        }
    }
}

/// The raw input of `tpa-ca issue`, exactly as typed.
#[derive(Debug, Clone, Default)]
pub struct AdminIssueInput {
    /// The public key text (`.pub` file content).
    pub public_key: String,
    /// `--principal`, repeated.
    pub principals: Vec<String>,
    /// `--ttl`.
    pub ttl: String,
    /// `--reason`.
    pub reason: String,
    /// `--extension`, repeated.
    pub extensions: Vec<String>,
    /// `--force-command`.
    pub force_command: Option<String>,
    /// `--source-address`.
    pub source_address: Option<String>,
}

/// A committed certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The signed certificate.
    pub certificate: Certificate,
    /// Its serial.
    pub serial: CertSerial,
    /// The audit event that records it.
    pub audit_seq: i64,
}

/// Why nothing was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The input broke a rule; recorded in the audit trail as denied when possible.
    #[error("{0}")]
    Invalid(String),
    /// The database failed; nothing was issued.
    #[error("storage failed, no certificate was issued: {0}")]
    Storage(#[from] StoreError),
    /// The signer failed; nothing was issued.
    #[error("signing failed, no certificate was issued: {0}")]
    Signing(#[from] SignerError),
}

impl From<rusqlite::Error> for IssueError {
    fn from(e: rusqlite::Error) -> Self {
        IssueError::Storage(StoreError::Sqlite(e))
    }
}

/// The longest reason accepted.
const MAX_REASON: usize = tpa_core::text::MAX_SHORT_REASON;

/// Parses and checks every field of an admin issuance; the first problem
/// wins. Returns the scope and the reason as checked free text.
fn admin_scope(
    input: &AdminIssueInput,
    admin: &Username,
    limits: &AdminIssueConfig,
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<(ApprovedScope, tpa_core::FreeText), String> {
    let reason = tpa_core::FreeText::parse(tpa_core::TextField::ShortReason, &input.reason)
        .map_err(|e| format!("--reason: {e}"))?;
    if reason.is_empty() {
        return Err("a reason is required (--reason \"INC-1234 why\")".to_owned());
    }
    if input.principals.is_empty() {
        return Err("at least one --principal is required".to_owned());
    }
    let principals = input
        .principals
        .iter()
        .map(|p| Principal::parse(p).map_err(|e| e.to_string()))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let ttl = HumanDuration::parse(&input.ttl).map_err(|e| format!("--ttl: {e}"))?;
    if ttl > limits.max_ttl {
        return Err(format!(
            "--ttl {ttl} exceeds the configured maximum {} (admin_issue.max_ttl)",
            limits.max_ttl
        ));
    }
    let extensions = input
        .extensions
        .iter()
        .map(|e| Extension::parse(e).map_err(|e| e.to_string()))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let critical_options = CriticalOptions {
        force_command: input
            .force_command
            .as_deref()
            .map(ForceCommand::parse)
            .transpose()
            .map_err(|e| e.to_string())?,
        source_address: input
            .source_address
            .as_deref()
            .map(SourceAddresses::parse)
            .transpose()
            .map_err(|e| e.to_string())?,
    };
    let subject =
        SubjectKey::parse(&input.public_key, &signer.ca_key_data()).map_err(|e| e.to_string())?;
    let window = TimeDelta::from_std(ttl.get()).map_err(|_| "--ttl is out of range".to_owned())?;
    let scope = ApprovedScope {
        subject,
        origin: CertOrigin::AdminIssue {
            admin: admin.clone(),
        },
        principals,
        extensions,
        critical_options,
        window_end: now + window,
        cert_ttl: ttl,
        hosts: BTreeSet::new(),
    };
    Ok((scope, reason))
}

/// `tpa-ca issue`: the audited break-glass path, through the same signing
/// transaction as the request path.
pub fn admin_issue(
    conn: &mut impl Transact,
    signer: &Signer,
    limits: &AdminIssueConfig,
    admin: &Username,
    input: &AdminIssueInput,
    now: DateTime<Utc>,
) -> Result<Issued, IssueError> {
    let actor = Actor::local_admin(admin);
    let (scope, reason) = match admin_scope(input, admin, limits, signer, now) {
        Ok(checked) => checked,
        Err(problem) => {
            record_denial(conn, &actor, "cert.issue", &problem, &input.reason, now)?;
            return Err(IssueError::Invalid(problem));
        }
    };
    issue(conn, signer, &actor, scope, reason.as_str(), now)
}

/// Records a refused attempt. A failure to record is itself an error.
fn record_denial(
    conn: &mut impl Transact,
    actor: &Actor,
    action: &str,
    problem: &str,
    stated_reason: &str,
    now: DateTime<Utc>,
) -> Result<(), IssueError> {
    let event = NewEvent {
        time: now,
        actor: actor.id.clone(),
        source: actor.source.clone(),
        action: action.to_owned(),
        object: "cert:none".to_owned(),
        outcome: Outcome::Denied,
        reason: problem.to_owned(),
        // What the rule forbids is replaced: the trail never holds terminal escapes.
        details: json!({ "stated_reason": tpa_core::text::printable(stated_reason.trim(), false, MAX_REASON) }),
    };
    conn.write(|tx| store::audit::append(tx, &event).map(drop))?;
    Ok(())
}

/// Signs `scope` inside one write transaction with its audit event and row.
pub fn issue(
    conn: &mut impl Transact,
    signer: &Signer,
    actor: &Actor,
    scope: ApprovedScope,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Issued, IssueError> {
    conn.write(|tx| issue_in(tx, signer, actor, scope, reason, now))
}

/// The signing step inside the caller's write transaction: serial, signature,
/// audit event, certificate row. Nothing is returned to a client until the
/// caller commits.
pub fn issue_in(
    tx: &impl Sql,
    signer: &Signer,
    actor: &Actor,
    scope: ApprovedScope,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Issued, IssueError> {
    let serial = fresh_serials(tx, 1)?
        .pop()
        .ok_or_else(|| IssueError::Invalid("no serial was drawn".to_owned()))?;
    let signed = Signed::new(signer, actor, scope, reason, serial, now)?;
    let event = store::audit::append(tx, &signed.event)?;
    certificates::insert(tx, &signed.row(event.seq))?;
    Ok(signed.issued(event.seq))
}

/// `n` serials, distinct from each other and from every serial the store
/// holds: one statement asks about all of them, and any already used are
/// drawn again.
pub(crate) fn fresh_serials(tx: &impl Sql, n: usize) -> Result<Vec<CertSerial>, StoreError> {
    let mut serials = Vec::with_capacity(n);
    loop {
        draw_serials(&mut serials, n);
        let asked: Vec<String> = serials.iter().map(ToString::to_string).collect();
        let used = certificates::taken(tx, &asked)?;
        if used.is_empty() {
            return Ok(serials);
        }
        serials.retain(|s| !used.contains(&s.to_string()));
    }
}

/// Fills `serials` up to `n` random serials, distinct from each other.
pub(crate) fn draw_serials(serials: &mut Vec<CertSerial>, n: usize) {
    let mut rng = rand::rng();
    while serials.len() < n {
        let candidate = CertSerial::generate(&mut rng);
        if !serials.contains(&candidate) {
            serials.push(candidate);
        }
    }
}

/// A certificate signed for an approved scope, with the audit event and the
/// row that record it, not yet written.
pub(crate) struct Signed {
    certificate: Certificate,
    serial: CertSerial,
    /// The `cert.issue` event.
    pub event: NewEvent,
    row: certificates::CertificateRow,
}

impl Signed {
    /// Builds the certificate's fields from `scope` (`tpa-core`'s template)
    /// and signs it with `serial`.
    pub fn new(
        signer: &Signer,
        actor: &Actor,
        scope: ApprovedScope,
        reason: &str,
        serial: CertSerial,
        now: DateTime<Utc>,
    ) -> Result<Self, IssueError> {
        let template = CertTemplate::new(scope, serial, now)
            .map_err(|e| IssueError::Invalid(e.to_string()))?;
        let certificate = signer.sign(&template)?;
        let principals: Vec<&str> = template.principals.iter().map(Principal::as_str).collect();
        let extensions: Vec<&str> = template.extensions.iter().map(|e| e.name()).collect();
        let critical_options = json!({
            "force-command": template.critical_options.force_command.as_ref().map(ForceCommand::as_str),
            "source-address": template.critical_options.source_address.as_ref().map(ToString::to_string),
        });
        let request_id = template.origin.request_id().map(ToString::to_string);
        let event = NewEvent {
            time: now,
            actor: actor.id.clone(),
            source: actor.source.clone(),
            action: "cert.issue".to_owned(),
            object: format!("cert:{serial}"),
            outcome: Outcome::Success,
            reason: reason.to_owned(),
            details: json!({
                "key_id": template.key_id,
                "principals": principals,
                "extensions": extensions,
                "critical_options": critical_options,
                "valid_after": template.valid_after,
                "valid_before": template.valid_before,
                "subject_key": template.subject.fingerprint(),
                "ca_key": signer.fingerprint(),
                "request_id": request_id,
            }),
        };
        let row = certificates::CertificateRow {
            serial: serial.to_string(),
            key_id: template.key_id.clone(),
            principals: serde_json::to_string(&principals).unwrap_or_default(),
            extensions: serde_json::to_string(&extensions).unwrap_or_default(),
            critical_options: critical_options.to_string(),
            valid_after: i64::try_from(template.valid_after).unwrap_or(i64::MAX),
            valid_before: i64::try_from(template.valid_before).unwrap_or(i64::MAX),
            subject_key_fingerprint: template.subject.fingerprint(),
            ca_key_fingerprint: certificate
                .signature_key()
                .fingerprint(HashAlg::Sha256)
                .to_string(),
            request_id,
            issued_by: actor.id.clone(),
            issued_at: format_time(now),
            // Set once the event has its place in the chain.
            audit_seq: 0,
        };
        Ok(Self {
            certificate,
            serial,
            event,
            row,
        })
    }

    /// The certificate's row, recorded by the audit event `audit_seq`.
    pub fn row(&self, audit_seq: i64) -> certificates::CertificateRow {
        certificates::CertificateRow {
            audit_seq,
            ..self.row.clone()
        }
    }

    /// The answer once the transaction commits.
    pub fn issued(self, audit_seq: i64) -> Issued {
        Issued {
            certificate: self.certificate,
            serial: self.serial,
            audit_seq,
        }
    }
}
