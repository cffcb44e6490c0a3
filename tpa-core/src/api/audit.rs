//! Wire types of the auditor's read-only endpoints: the audit log, request
//! timelines, certificates and bastion sessions.

use serde::{Deserialize, Serialize};

use super::RequestView;

/// One audit event as stored, with its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEventView {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// RFC 3339 UTC with microseconds.
    pub time: String,
    /// `user:<issuer>#<subject>`, `admin:<name>`, `bastion:<name>`, `system`.
    pub actor: String,
    /// Client address, `cli:uid=…`, `bastion:<name>`.
    pub source: String,
    /// e.g. `request.approve`, `cert.issue`, `session.record`.
    pub action: String,
    /// e.g. `request:req_…`, `cert:<serial>`.
    pub object: String,
    /// `success`, `denied` or `error`.
    pub outcome: String,
    /// Why.
    pub reason: String,
    /// Canonical JSON text of the structured details.
    pub details: String,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// `GET /api/v1/audit`: one page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The events, highest `seq` first.
    pub events: Vec<AuditEventView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// A signed certificate as the auditor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    /// Decimal serial.
    pub serial: String,
    /// Key id.
    pub key_id: String,
    /// Principals (logins).
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: i64,
    /// Unix seconds.
    pub valid_before: i64,
    /// `SHA256:…` of the certified key.
    pub subject_key_fingerprint: String,
    /// `SHA256:…` of the signing CA key.
    pub ca_key_fingerprint: String,
    /// The request, for certificates issued through the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Audit actor of the issuer.
    pub issued_by: String,
    /// RFC 3339 UTC.
    pub issued_at: String,
    /// The issuance audit event.
    pub audit_seq: i64,
    /// Whether the certificate is revoked (its request was revoked or cancelled).
    pub revoked: bool,
}

/// `GET /api/v1/certificates`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateList {
    /// The certificates, highest `audit_seq` first.
    pub certificates: Vec<CertificateView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// A forwarded session a bastion recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// `ses_…`.
    pub session_id: String,
    /// The bastion's configured name.
    pub bastion: String,
    /// `req_…`.
    pub request_id: String,
    /// Decimal certificate serial.
    pub serial: String,
    /// Certificate key id.
    pub key_id: String,
    /// SSH login.
    pub login: String,
    /// The requester's user name.
    pub requester: String,
    /// Client `ip:port`.
    pub source: String,
    /// Target host.
    pub target: String,
    /// The address the bastion connected to.
    pub target_address: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub ended_at: String,
    /// Client to target.
    pub bytes_to_target: i64,
    /// Target to client.
    pub bytes_from_target: i64,
    /// How it ended (see `SESSION_END_REASONS`).
    pub end_reason: String,
    /// The error, when it ended with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `session.record` audit event.
    pub audit_seq: i64,
}

/// `GET /api/v1/sessions`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// The sessions, highest `audit_seq` first.
    pub sessions: Vec<SessionView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// `GET /api/v1/requests/{id}/timeline`: everything that happened to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// The request as it is now.
    pub request: RequestView,
    /// Its audit events (submission, decisions, issuances and refusals,
    /// session records, cancellation, revocation, expiry), oldest first.
    pub events: Vec<AuditEventView>,
    /// Its certificates, oldest first.
    pub certificates: Vec<CertificateView>,
    /// Its bastion sessions, oldest first.
    pub sessions: Vec<SessionView>,
}

/// The query of `GET /api/v1/audit` and of the audit log page. Every field
/// is optional; an empty value means "any" (HTML forms send empty fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// A user name: events by them or about their requests.
    #[serde(default)]
    pub user: Option<String>,
    /// A role name.
    #[serde(default)]
    pub role: Option<String>,
    /// A host name.
    #[serde(default)]
    pub host: Option<String>,
    /// An action (`request.approve`) or a prefix ending in `.` (`request.`).
    #[serde(default)]
    pub action: Option<String>,
    /// From this time on: `2026-11-23`, `2026-11-23T10:00` or RFC 3339 (UTC).
    #[serde(default)]
    pub from: Option<String>,
    /// Before this time (same forms as `from`).
    #[serde(default)]
    pub to: Option<String>,
    /// Only events with a smaller `seq` (the `next_before` of the previous page).
    #[serde(default)]
    pub before: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[serde(default)]
    pub limit: Option<String>,
}

/// The query of `GET /api/v1/certificates` and `GET /api/v1/sessions` (and
/// their pages).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this request's (`req_…`).
    #[serde(default)]
    pub request: Option<String>,
    /// Only items whose audit event has a smaller `seq`.
    #[serde(default)]
    pub before: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[serde(default)]
    pub limit: Option<String>,
}
