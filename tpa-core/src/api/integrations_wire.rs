//! Wire types of the external policy hook (what the CA asks, what it accepts
//! back) and of the alerts on unusual activity (the generic webhook body).

use serde::{Deserialize, Serialize};

use super::{GrantView, Person};

/// The body the CA posts to the policy hook, signed with `X-TPA-Signature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyHookCall {
    /// Format version, `1`.
    pub version: u32,
    /// A fresh random value; the answer must repeat it (no replayed answers).
    pub nonce: String,
    /// `submit` (before the request is stored), `issue` (before a certificate
    /// is signed), `approve` (the automated-check stage) or `test` (the
    /// read-only call of `tpa-ca integrations test`).
    pub stage: String,
    /// When the CA asked, RFC 3339 UTC.
    pub time: String,
    /// Who asks, with their groups as the CA sees them now.
    pub requester: HookRequester,
    /// What is asked.
    pub request: HookRequest,
    /// Exactly what a certificate would carry (the grant snapshot).
    pub grant: GrantView,
    /// SHA-256 fingerprint of the key to certify (`issue` only).
    pub public_key_fingerprint: Option<String>,
}

/// The requester as the hook sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRequester {
    /// Identity (issuer, subject) and username.
    #[serde(flatten)]
    pub person: Person,
    /// Their groups now.
    pub groups: Vec<String>,
}

/// The request as the hook sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRequest {
    /// The request id (`issue` only: at `submit` it does not exist yet).
    pub id: Option<String>,
    /// The role.
    pub role: String,
    /// The hosts.
    pub hosts: Vec<String>,
    /// The window length in seconds.
    pub duration_secs: u64,
    /// The reason, as typed (after the free-text rules).
    pub reason: String,
    /// The ticket, if any.
    pub ticket: Option<String>,
    /// The scheduled start, if any.
    pub start: Option<String>,
    /// `auto`, `stages` or `break_glass`.
    pub approval_path: String,
    /// The request's content hash (`issue` only): what the approvals bind.
    pub content_hash: Option<String>,
}

/// The policy hook's answer. Unknown fields are ignored; a missing field is
/// an error (the CA then refuses: fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyHookAnswer {
    /// The nonce of the call.
    pub nonce: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// Why (required with `deny`; shown to the requester).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The body of an alert sent to a generic webhook destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Always `alert`.
    pub event: String,
    /// The `[[alerts]]` rule's name.
    pub rule: String,
    /// The rule kind, e.g. `break_glass`, `denied_burst`.
    pub kind: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: String,
    /// One line for people.
    pub summary: String,
    /// What the alert is about (an actor, an address, a request).
    pub subject: String,
    /// The same for every alert of this rule and subject.
    pub dedup_key: String,
    /// When the first matching event happened, RFC 3339 UTC.
    pub at: String,
    /// How many events matched (within the window, for counting rules).
    pub count: u64,
    /// The audit `seq` of the events that raised it (at most 20).
    pub audit_seqs: Vec<i64>,
    /// The triggering event's actor, action, object, source and reason.
    pub actor: String,
    /// See [`AlertEvent::actor`].
    pub action: String,
    /// See [`AlertEvent::actor`].
    pub object: String,
    /// See [`AlertEvent::actor`].
    pub source: String,
    /// See [`AlertEvent::actor`].
    pub reason: String,
}
