//! Wire types between a bastion and the CA: the revocation feed the bastion
//! polls and the session records it delivers. Both endpoints take the
//! bastion's own token (`[[bastions]]` in `tpa.toml`), never a user's.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/bastion/revocations[?since=<cursor>]`.
///
/// Without `since` (or with a cursor the CA cannot use), the answer is a full
/// snapshot (`full: true`): every revoked or cancelled request whose window
/// has not ended yet, and every approved request whose window is open. With
/// `since`, it lists only the requests that changed after that cursor, each
/// with its current state. The bastion passes `cursor` back as `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationFeed {
    /// Pass back as `since` on the next poll.
    pub cursor: u64,
    /// Whether this is a full snapshot (replace what you hold) or a delta.
    pub full: bool,
    /// Requests that no longer grant access: revoked, cancelled, ended.
    pub revoked: Vec<RevokedGrant>,
    /// Approved requests whose window is open, with its end.
    pub active: Vec<ActiveGrant>,
    /// Every revoked certificate that is still valid, by serial (decimal):
    /// revoked one by one, with their request, user or CA key. Always the
    /// complete list, in deltas too: replace what you hold. (Added after the
    /// first feed version; absent means none.)
    #[serde(default)]
    pub revoked_serials: Vec<String>,
    /// Every revoked CA key (`SHA256:…`): refuse every certificate it signed.
    /// Always the complete list.
    #[serde(default)]
    pub revoked_ca_keys: Vec<String>,
    /// The subject keys (`SHA256:…` fingerprints) of every certificate of a
    /// request that is inside its validity period, revoked or not. Always the
    /// complete list. The bastion answers a key's probe only for these, so
    /// clients never sign with plain keys; the signed attempt still checks
    /// the certificate in full (and says why a revoked one is refused).
    /// Absent (a CA older than this field): the bastion answers every probe
    /// and decides at the signed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified_keys: Option<Vec<String>>,
}

/// A request that no longer grants access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedGrant {
    /// The key id of its certificates: `tpa:request=<id>:user=<name>`.
    pub key_id: String,
    /// `req_…`.
    pub request: String,
    /// `revoked`, `cancelled`, `ended` (window over), `denied`, `expired`.
    pub state: String,
    /// Unix seconds after which no certificate of the request is valid anyway
    /// (its window end); the bastion may forget the entry then.
    pub forget_after: u64,
}

/// An approved request whose window is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveGrant {
    /// The key id of its certificates.
    pub key_id: String,
    /// `req_…`.
    pub request: String,
    /// Unix seconds: sessions of the request are cut then.
    pub window_end: u64,
}

/// How a forwarded session ended, as a session record names it.
pub const SESSION_END_REASONS: &[&str] = &[
    "client_closed",
    "target_closed",
    "certificate_expired",
    "window_ended",
    "access_revoked",
    "bastion_shutdown",
    "error",
];

/// One forwarded channel through the bastion, from open to close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    /// Random, unique: `ses_` and 32 hex digits. Redelivery with the same id is a no-op.
    pub session_id: String,
    /// The bastion's name as the CA knows it (set by the CA from the token; ignored on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion: Option<String>,
    /// The certificate serial (decimal string: serials use all 64 bits).
    pub serial: String,
    /// The certificate key id.
    pub key_id: String,
    /// The request (`req_…`) named by the certificate.
    pub request: String,
    /// The SSH username at the bastion (one of the certificate's principals).
    pub login: String,
    /// The requester, from the key id.
    pub requester: String,
    /// The client's address, `ip:port`.
    pub source: String,
    /// The target host name.
    pub target: String,
    /// The address the bastion connected to.
    pub target_address: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub ended_at: String,
    /// Bytes from the client to the target.
    pub bytes_to_target: u64,
    /// Bytes from the target to the client.
    pub bytes_from_target: u64,
    /// One of [`SESSION_END_REASONS`].
    pub end: String,
    /// The error, when `end` is `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /api/v1/sessions`: records in the order they ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionBatch {
    /// At most 100 records.
    pub records: Vec<SessionRecord>,
}

/// The answer to a [`SessionBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBatchResult {
    /// Records stored now.
    pub stored: u64,
    /// Records the CA already had (same session id): redeliveries.
    pub duplicates: u64,
}

/// What a bastion refused, as its refusal reports name it.
pub const BASTION_EVENT_KINDS: &[&str] = &["auth_rejected", "channel_refused", "events_suppressed"];

/// One refusal at a bastion, or several identical ones coalesced: an
/// authentication attempt it rejected, a channel or forwarding request it
/// refused, or (`events_suppressed`) how many refusals it did not report one
/// by one because too many distinct ones came at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BastionEvent {
    /// Random, unique: `evt_` and 32 hex digits. Redelivery with the same id is a no-op.
    pub event_id: String,
    /// One of [`BASTION_EVENT_KINDS`].
    pub kind: String,
    /// The client's IP address (`-` for `events_suppressed`).
    pub source: String,
    /// The SSH username of the attempt (may be empty; control characters escaped).
    pub login: String,
    /// The request (`req_…`) of the accepted certificate, for a channel
    /// refused after authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// What was asked: `authentication`, `session`, `direct-tcpip web-2:22`, …
    pub what: String,
    /// Why it was refused (one line, no key material).
    pub reason: String,
    /// How many identical refusals this stands for (at least 1).
    pub count: u64,
    /// RFC 3339 UTC: the first of them.
    pub first_at: String,
    /// RFC 3339 UTC: the last of them.
    pub last_at: String,
}

/// `POST /api/v1/bastion/events`: refusal reports in the order they were made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BastionEventBatch {
    /// At most 100 events.
    pub events: Vec<BastionEvent>,
}

/// The answer to a [`BastionEventBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BastionEventBatchResult {
    /// Events stored now.
    pub stored: u64,
    /// Events the CA already had (same event id): redeliveries.
    pub duplicates: u64,
}
