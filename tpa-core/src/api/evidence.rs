//! Wire types of revocation and of the access report.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/revocations`: revoke by one of `serial`, `request`, `user`
/// or `ca_key` (exactly one), with a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// A certificate serial (decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// A request id (`req_…`): all its certificates, and its grant ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// A username: all their active grants and live certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A CA key's SHA-256 fingerprint (`SHA256:…`): every certificate it signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<String>,
    /// Why (recorded in the audit trail). Required.
    pub reason: String,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// `serial`, `request`, `user` or `ca_key`.
    pub kind: String,
    /// The serial, request id, username or fingerprint.
    pub target: String,
    /// Certificates revoked by this call (0 when they already were).
    pub certificates_revoked: u64,
    /// Grants ended by this call.
    pub requests_ended: Vec<String>,
    /// True when everything named was already revoked.
    pub already_revoked: bool,
    /// The KRL version that includes it.
    pub krl_version: u64,
}

/// The access report: who had which role on which hosts in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessReport {
    /// Start of the period (RFC 3339 UTC).
    pub since: String,
    /// End of the period (RFC 3339 UTC).
    pub until: String,
    /// Every grant whose window overlaps the period, oldest first.
    pub grants: Vec<AccessGrant>,
}

/// One grant of the access report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGrant {
    /// `req_…`.
    pub request: String,
    /// The requester's username.
    pub user: String,
    /// The requester's identity (`issuer#subject`).
    pub identity: String,
    /// The role.
    pub role: String,
    /// The approved hosts.
    pub hosts: Vec<String>,
    /// The requester's reason.
    pub reason: String,
    /// The ticket, when given.
    pub ticket: Option<String>,
    /// `auto`, `stages` or `break_glass`.
    pub path: String,
    /// The approvers' usernames, in order.
    pub approvers: Vec<String>,
    /// Window start (RFC 3339 UTC).
    pub window_start: String,
    /// Window end as it stands (RFC 3339 UTC; earlier than asked when ended early).
    pub window_end: String,
    /// `active`, `window_ended`, `revoked` or `cancelled`.
    pub ended: String,
    /// Who ended it early (`issuer#subject`), and their comment.
    pub ended_by: Option<String>,
    /// The comment of the decision that ended it.
    pub end_comment: Option<String>,
    /// Serials of the certificates issued for it.
    pub certificates: Vec<String>,
}
