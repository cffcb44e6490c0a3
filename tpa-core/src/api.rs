//! Wire types of the CA's HTTP API. Only this module derives serde traits.

use serde::{Deserialize, Serialize};

mod audit;
mod bastion;
mod evidence;
mod integrations_wire;
mod views;

pub use evidence::{AccessGrant, AccessReport, RevokeBody, RevokeResponse};
pub use integrations_wire::{
    AlertEvent, HookRequest, HookRequester, PolicyHookAnswer, PolicyHookCall,
};

pub use audit::{
    AuditEventView, AuditPage, AuditQuery, CertificateList, CertificateView, ListQuery,
    SessionList, SessionView, Timeline,
};
pub use bastion::{
    ActiveGrant, BASTION_EVENT_KINDS, BastionEvent, BastionEventBatch, BastionEventBatchResult,
    RevocationFeed, RevokedGrant, SESSION_END_REASONS, SessionBatch, SessionBatchResult,
    SessionRecord,
};

/// Every API error: a stable machine code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code, e.g. `not_found`, `unavailable`.
    pub code: String,
    /// What went wrong and what to do, without internal detail.
    pub message: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, `degraded` (an OpenID provider is down) or `unavailable`.
    pub status: String,
    /// One entry per dependency.
    pub checks: Vec<HealthCheck>,
}

/// One dependency's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `database`, `ca_key`.
    pub name: String,
    /// Whether it is usable.
    pub ok: bool,
    /// A short, non-secret explanation when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An access request as the API, the web page and webhooks show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// `req_…`.
    pub id: String,
    /// `pending`, `approved`, `denied`, `expired`, `cancelled`, `revoked`.
    pub state: String,
    /// True while an approved window is open now.
    pub active: bool,
    /// Role name.
    pub role: String,
    /// Host names.
    pub hosts: Vec<String>,
    /// Window length in seconds.
    pub duration_secs: u64,
    /// Window length, e.g. `2h`.
    pub duration: String,
    /// Why.
    pub reason: String,
    /// Ticket or incident id.
    pub ticket: Option<String>,
    /// Who asked.
    pub requester: Person,
    /// `stages`, `auto` or `break_glass`.
    pub approval_path: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When a pending request expires, RFC 3339 UTC.
    pub pending_until: String,
    /// Scheduled start, if asked.
    pub start: Option<String>,
    /// Approved window start.
    pub window_start: Option<String>,
    /// Approved window end.
    pub window_end: Option<String>,
    /// Approvals so far.
    pub approvals: Vec<ApprovalView>,
    /// What is still needed while pending.
    pub still_needed: Option<StillNeeded>,
    /// Who denied, cancelled or revoked.
    pub decided_by: Option<Person>,
    /// Their comment.
    pub comment: Option<String>,
    /// What a certificate for this request may carry (the snapshot approvers
    /// approve). Absent for requests stored before snapshots existed.
    #[serde(default)]
    pub grant: Option<GrantView>,
    /// The on-call approval, when the requester's being on call approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_call_approval: Option<OnCallApprovalView>,
    /// What the on-call and ticket checks found at submission, in order
    /// (shown by `GET /api/v1/requests/{id}`, the submission's answer and
    /// the request page; empty in lists and webhooks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckView>,
}

/// An approval made because the requester was on call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCallApprovalView {
    /// The rule's source: `<provider kind>:<provider name>:<schedule>`.
    pub source: String,
    /// The provider's answer id (which on-call entry showed it).
    pub answer_id: String,
    /// RFC 3339 UTC.
    pub at: String,
    /// The request content hash it approved.
    pub content_hash: String,
}

/// One on-call or ticket check made at submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    /// `on_call` or `ticket`.
    pub kind: String,
    /// The configured provider's name.
    pub provider: String,
    /// `on_call`, `not_on_call`, `no_verified_email`, `no_incident`,
    /// `not_applicable`, `open`, `refused`, `flagged`, or why the provider
    /// gave no answer: `timeout`, `unreachable`, `rate_limited`,
    /// `provider_error`, `unauthorized`, `not_found`, `answer_too_large`,
    /// `bad_answer`, `too_many_pages`.
    pub outcome: String,
    /// One sentence for people.
    pub summary: String,
    /// The provider's answer id, when there is one.
    #[serde(default)]
    pub answer_id: Option<String>,
    /// RFC 3339 UTC.
    pub at: String,
}

/// The grant snapshot: exactly what certificates for a request may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    /// Principals (logins), host-scoped ones as `group:login`.
    pub principals: Vec<String>,
    /// Extensions, e.g. `permit-pty`.
    pub extensions: Vec<String>,
    /// The forced command, if any.
    pub force_command: Option<String>,
    /// The allowed source addresses, if restricted.
    pub source_address: Option<String>,
    /// Longest life of one certificate, e.g. `10m`.
    pub cert_ttl: String,
}

/// A person as shown by the API: identity plus display fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Identity provider.
    pub issuer: String,
    /// Stable id at the provider.
    pub subject: String,
    /// Short name, when known.
    pub username: Option<String>,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// Who.
    pub approver: Person,
    /// Stage number, from 1.
    pub stage: usize,
    /// The group the approval was counted for, as recorded when it was given.
    pub group: Option<String>,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The approver's comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The open approval stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StillNeeded {
    /// Stage number, from 1.
    pub stage: usize,
    /// The group that must approve.
    pub group: String,
    /// How many more approvals from it.
    pub approvals: u32,
}

/// A webhook notification (generic JSON form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// `request.created`, `request.approved`, `request.denied`, `request.expired`,
    /// `request.cancelled`, `request.revoked`, `request.break_glass`.
    pub event: String,
    /// When it happened, RFC 3339 UTC.
    pub at: String,
    /// The request after the change.
    pub request: RequestView,
}

/// A Slack-compatible incoming-webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackMessage {
    /// The message text (Slack mrkdwn).
    pub text: String,
}

/// `POST /api/v1/login` (JSON) and `POST /login` (form): a password login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's username.
    pub username: String,
    /// The password.
    pub password: String,
}

/// `POST /login` (form): a password login and where to go afterwards.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    /// The account's username.
    pub username: String,
    /// The password.
    pub password: String,
    /// A local path to continue to (checked by the CA; `/` when unsafe).
    #[serde(default)]
    pub next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("next", &self.next)
            .finish()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The body of `POST /api/v1/cli/token`: the one-time code the CA sent to
/// the CLI's loopback listener, with the CLI's PKCE verifier.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliTokenRequest {
    /// The `code` query parameter the loopback listener received.
    pub code: String,
    /// The PKCE verifier whose S256 challenge started the login.
    pub code_verifier: String,
    /// The loopback redirect URI the login was started with.
    pub redirect_uri: String,
}

impl std::fmt::Debug for CliTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliTokenRequest")
            .field("code", &"<redacted>")
            .field("code_verifier", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// The answer to `POST /api/v1/cli/device`: a device login for
/// `tpa-ssh login --no-browser` (RFC 8628 style).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAuthorization {
    /// The secret the CLI polls `POST /api/v1/cli/device/token` with.
    pub device_code: String,
    /// The code the person types at the verification page, `XXXX-XXXX`.
    pub user_code: String,
    /// The verification page's path on the CA (`/device`).
    pub verification_path: String,
    /// Seconds until both codes expire.
    pub expires_in: i64,
    /// Seconds the CLI waits between polls (more after `slow_down`).
    pub interval: i64,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &"<redacted>")
            .field("user_code", &self.user_code)
            .field("verification_path", &self.verification_path)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// The body of `POST /api/v1/cli/device/token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTokenRequest {
    /// The device code of [`DeviceAuthorization`].
    pub device_code: String,
}

impl std::fmt::Debug for DeviceTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceTokenRequest { device_code: <redacted> }")
    }
}

/// The answer to `POST /api/v1/login`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The API token (`tpa_…`), sent as `Authorization: Bearer <token>`. Shown once.
    pub token: String,
    /// When the token stops working (RFC 3339 UTC).
    pub expires_at: String,
    /// Who logged in.
    pub user: UserInfo,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("user", &self.user)
            .finish()
    }
}

/// A user as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Short login name.
    pub username: String,
    /// For people to read.
    pub display_name: String,
    /// Group names, sorted.
    pub groups: Vec<String>,
    /// Who they are: what separation of duties compares.
    pub identity: IdentityInfo,
}

/// An identity: issuer and subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// The identity provider (`tpa:local` for built-in accounts).
    pub issuer: String,
    /// The provider's stable id of the user.
    pub subject: String,
}

/// `GET /api/v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The caller, with current groups.
    pub user: UserInfo,
    /// `session` (web cookie) or `api_token` (bearer).
    pub via: String,
    /// When the caller's session or token stops working (RFC 3339 UTC).
    pub expires_at: String,
    /// The token came from a device login (`tpa-ssh login --no-browser`,
    /// shorter-lived: `auth.device_token_ttl`). Absent from older CAs.
    #[serde(default)]
    pub device_login: bool,
}

/// A web form that carries only the CSRF token (`POST /logout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token, from a hidden field.
    #[serde(default)]
    pub csrf_token: String,
}

/// `POST /api/v1/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequestBody {
    /// Role name.
    pub role: String,
    /// Host names.
    pub hosts: Vec<String>,
    /// Duration such as `2h`; the role's default when absent.
    #[serde(default)]
    pub duration: Option<String>,
    /// Why (required by most roles).
    #[serde(default)]
    pub reason: String,
    /// Ticket or incident id.
    #[serde(default)]
    pub ticket: Option<String>,
    /// Scheduled start, RFC 3339.
    #[serde(default)]
    pub start: Option<String>,
    /// Break-glass self-approval (roles with a break_glass rule; needs a ticket).
    #[serde(default)]
    pub break_glass: bool,
}

/// Answer to `POST /api/v1/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The request (or the active grant it duplicates).
    pub request: RequestView,
    /// True when an identical active grant was returned instead of a new request.
    pub existing: bool,
}

/// `GET /api/v1/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestList {
    /// The requests.
    pub requests: Vec<RequestView>,
}

/// `POST /api/v1/requests/{id}/approve`: optional narrowing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// A shorter duration.
    #[serde(default)]
    pub duration: Option<String>,
    /// A subset of the hosts.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// An optional comment, shown with the approval.
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/requests/{id}/deny`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyBody {
    /// Why (shown to the requester).
    #[serde(default)]
    pub comment: String,
}

/// `POST /api/v1/requests/{id}/certificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateBody {
    /// The user's public key, as in a `.pub` file.
    pub public_key: String,
}

/// A signed certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// The certificate line for `id_ed25519-cert.pub`.
    pub certificate: String,
    /// Its serial (decimal).
    pub serial: String,
    /// Its key id.
    pub key_id: String,
    /// Its principals.
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
}

/// `POST /api/v1/requests/{id}/review`: the post-incident review of a break-glass grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// What the reviewer found (required).
    pub comment: String,
}

/// `GET /api/v1/client-config`: what `tpa-ssh config` and `tpa-ssh ssh` need to
/// know about this installation (the `[client]` section of `tpa.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Where users reach the bastion (`host` or `host:port`), when there is one.
    pub bastion: Option<String>,
    /// The host patterns (`web-*`, `*.prod.example.com`) that go through TPA.
    pub host_patterns: Vec<String>,
    /// The domains the patterns may lie under (`[client] allowed_suffixes`);
    /// `tpa-ssh config` shows them and applies the same bound
    /// ([`crate::HostPattern::check_bounds`]). Absent from older CAs.
    #[serde(default)]
    pub allowed_suffixes: Vec<String>,
}

/// `tpa-ssh`'s saved login (`~/.config/tpa/session.json`, mode 0600).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSession {
    /// The CA's base URL.
    pub ca_url: String,
    /// The API token (`tpa_…`).
    pub token: String,
    /// When the token expires, RFC 3339.
    pub expires_at: String,
    /// Who logged in.
    pub username: String,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("ca_url", &self.ca_url)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("username", &self.username)
            .finish()
    }
}

/// `GET /api/v1/policy/explain` (and `tpa-ca policy explain`): whether the
/// user may request the role on the host, what certificates would carry, and
/// who would approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainView {
    /// The user explained.
    pub user: String,
    /// The role asked about.
    pub role: String,
    /// The host asked about (canonical when it parses).
    pub host: String,
    /// Whether the user may request it.
    pub allowed: bool,
    /// When not: the stable refusal code.
    pub code: Option<String>,
    /// When not: why, for people.
    pub message: Option<String>,
    /// `auto`, `stages` or `break_glass` when allowed.
    pub path: Option<String>,
    /// The window length when allowed, e.g. `2h`.
    pub duration: Option<String>,
    /// What certificates would carry.
    pub grant: Option<GrantView>,
    /// The approval stages (empty when auto-approved).
    pub stages: Vec<ExplainStage>,
    /// The auto-approve rule of the role, described, if it has one.
    pub auto_approve: Option<String>,
    /// The break-glass rule of the role, described, if it has one.
    pub break_glass: Option<String>,
    /// A ticket pattern the request must match, if the role has one.
    pub ticket_pattern: Option<String>,
}

/// One approval stage in an explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainStage {
    /// From 1.
    pub stage: usize,
    /// The group.
    pub group: String,
    /// How many approvals.
    pub approvals: u32,
    /// Known current members who could approve (never the user), by username.
    pub could_approve: Vec<String>,
}

impl std::fmt::Display for ExplainView {
    /// The text `tpa-ca policy explain` and `tpa-ssh explain` print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let duration = self.duration.as_deref().unwrap_or("default");
        writeln!(
            f,
            "{} asks for {} on {} for {duration}:",
            self.user, self.role, self.host
        )?;
        if !self.allowed {
            writeln!(
                f,
                "  denied ({}): {}",
                self.code.as_deref().unwrap_or("denied"),
                self.message.as_deref().unwrap_or("")
            )?;
        } else {
            let how = match self.path.as_deref() {
                Some("auto") => "allowed, auto-approved at once",
                Some("break_glass") => "allowed as break-glass",
                _ => "allowed, after approval",
            };
            writeln!(f, "  {how}")?;
        }
        if let Some(g) = &self.grant {
            writeln!(f, "  certificate scope:")?;
            writeln!(f, "    principals:       {}", g.principals.join(", "))?;
            let ext = if g.extensions.is_empty() {
                "none".to_owned()
            } else {
                g.extensions.join(", ")
            };
            writeln!(f, "    extensions:       {ext}")?;
            writeln!(
                f,
                "    force-command:    {}",
                g.force_command.as_deref().unwrap_or("none")
            )?;
            writeln!(
                f,
                "    source-address:   {}",
                g.source_address.as_deref().unwrap_or("any")
            )?;
            writeln!(f, "    certificate TTL:  {}", g.cert_ttl)?;
            writeln!(f, "    window:           {duration}")?;
        }
        for s in &self.stages {
            let who = if s.could_approve.is_empty() {
                "nobody known".to_owned()
            } else {
                s.could_approve.join(", ")
            };
            writeln!(
                f,
                "  stage {}: {} approval(s) from {} (could approve: {who})",
                s.stage, s.approvals, s.group
            )?;
        }
        if let Some(a) = &self.auto_approve {
            writeln!(f, "  auto-approve: {a}")?;
        }
        if let Some(b) = &self.break_glass {
            writeln!(f, "  break-glass: {b}")?;
        }
        if let Some(t) = &self.ticket_pattern {
            writeln!(f, "  ticket: required, matching {t}")?;
        }
        Ok(())
    }
}
