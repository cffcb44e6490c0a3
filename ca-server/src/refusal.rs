//! `Refusal`: every stable code a rule of the CA can refuse with, one variant
//! each. `code()` here and `status()` (in `http::error`, which owns HTTP) are
//! exhaustive matches, so a new refusal cannot silently fall into a default.

use tpa_core::text::{TextError, TextField};
use tpa_core::{DecisionRefusal, IssueRefusal, PolicyRefusal};

/// Why a rule said no; the message that goes with it is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such object, or not the caller's to see.
    NotFound,
    /// Deciding or reviewing one's own request.
    OwnRequest,
    /// Not an approver of the open stage (or of the role).
    NotApprover,
    /// Only the requester may cancel.
    NotRequester,
    /// A certificate for someone else's request.
    NotYours,
    /// The requester may not (or no longer) request the role.
    RoleNotAllowed,
    /// Not in an `[auditors]` group.
    NotAuditor,
    /// `/metrics` without loopback or the scrape token.
    MetricsForbidden,
    /// Not in `auth.admin_groups`.
    NotAdmin,
    /// Deciding a request that is no longer pending.
    NotPending,
    /// This person already approved.
    AlreadyApproved,
    /// A certificate for a request that is not approved.
    NotApproved,
    /// Ending a request that is over.
    NotActive,
    /// A certificate before the approved window.
    WindowNotStarted,
    /// A certificate after the approved window.
    WindowEnded,
    /// The approvals no longer satisfy the role.
    PolicyNotSatisfied,
    /// The stored request differs from what was approved.
    ContentChanged,
    /// An approval stopped counting; the request is pending again.
    NeedsReapproval,
    /// The role as configured now conflicts with the approved grant.
    RoleChanged,
    /// Revoking the CA's current signing key.
    SigningKey,
    /// The configured signing key was revoked and may never sign again.
    SigningKeyRevoked,
    /// Reviewing a grant that was not a break-glass grant.
    NotBreakGlass,
    /// Reviewing a break-glass grant that was already reviewed.
    AlreadyReviewed,
    /// A device or SSO code that is unknown, used or expired.
    InvalidGrant,
    /// A device login nobody has confirmed yet.
    AuthorizationPending,
    /// A device poll before its interval.
    SlowDown,
    /// The person denied the device login.
    AccessDenied,
    /// The device login expired.
    ExpiredToken,
    /// Too many device logins wait for confirmation.
    TooManyLogins,
    /// No such role.
    UnknownRole,
    /// Longer than the role allows.
    DurationTooLong,
    /// A duration that cannot be parsed, or zero.
    BadDuration,
    /// No host, or a malformed one.
    BadHost,
    /// A host outside the role.
    HostNotInRole,
    /// A host in more than one host group of the role.
    HostInSeveralGroups,
    /// The role needs a reason.
    ReasonRequired,
    /// The reason breaks the free-text rule.
    BadReason,
    /// The role needs a ticket (or incident).
    TicketRequired,
    /// The ticket does not match the role's pattern.
    TicketMismatch,
    /// The ticket breaks the free-text rule.
    BadTicket,
    /// The comment breaks the free-text rule.
    BadComment,
    /// A start in the past, too far ahead, or not RFC 3339.
    BadStart,
    /// The role has no break-glass rule.
    NoBreakGlass,
    /// An approval that would widen the request.
    Widening,
    /// A public key that cannot be parsed or is not allowed.
    BadPublicKey,
    /// A request list scope other than mine, inbox or all.
    BadScope,
    /// A revocation naming no target or several.
    BadTarget,
    /// A revocation target kind that does not exist.
    BadKind,
    /// A malformed certificate serial.
    BadSerial,
    /// A malformed request id.
    BadRequestId,
    /// A malformed username.
    BadUsername,
    /// A CA key named by something other than its SHA-256 fingerprint.
    BadFingerprint,
    /// The web revoke form without its confirmation box.
    ConfirmRequired,
    /// An empty or malformed report period.
    BadPeriod,
    /// A malformed audit filter.
    BadFilter,
    /// A bastion session record that cannot be stored.
    InvalidSessionRecord,
    /// A bastion event that cannot be stored.
    InvalidBastionEvent,
    /// A certificate job whose input is invalid.
    /// The directory account is disabled or locked (issue 16).
    AccountDisabled,
    /// The directory password expired (issue 16).
    PasswordExpired,
    /// The directory entry has no usable stable id or username (issue 16).
    DirectoryEntryUnusable,
    /// The directory could not be asked; decisions fail closed (issue 16).
    DirectoryUnavailable,
    /// The role's ticket check refused the ticket (issue 17).
    TicketRefused,
    /// The role's ticket system did not answer (issue 17).
    TicketSystemUnavailable,
    /// The external policy hook denied the call (issue 17).
    PolicyHookDenied,
    /// The external policy hook gave no valid answer in time (issue 17).
    PolicyHookUnavailable,
    Invalid,
}

impl Refusal {
    /// The stable machine code, e.g. `own_request`.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::OwnRequest => "own_request",
            Refusal::NotApprover => "not_approver",
            Refusal::NotRequester => "not_requester",
            Refusal::NotYours => "not_yours",
            Refusal::RoleNotAllowed => "role_not_allowed",
            Refusal::NotAuditor => "not_auditor",
            Refusal::MetricsForbidden => "metrics_forbidden",
            Refusal::NotAdmin => "not_admin",
            Refusal::NotPending => "not_pending",
            Refusal::AlreadyApproved => "already_approved",
            Refusal::NotApproved => "not_approved",
            Refusal::NotActive => "not_active",
            Refusal::WindowNotStarted => "window_not_started",
            Refusal::WindowEnded => "window_ended",
            Refusal::PolicyNotSatisfied => "policy_not_satisfied",
            Refusal::ContentChanged => "content_changed",
            Refusal::NeedsReapproval => "needs_reapproval",
            Refusal::RoleChanged => "role_changed",
            Refusal::SigningKey => "signing_key",
            Refusal::SigningKeyRevoked => "signing_key_revoked",
            Refusal::NotBreakGlass => "not_break_glass",
            Refusal::AlreadyReviewed => "already_reviewed",
            Refusal::InvalidGrant => "invalid_grant",
            Refusal::AuthorizationPending => "authorization_pending",
            Refusal::SlowDown => "slow_down",
            Refusal::AccessDenied => "access_denied",
            Refusal::ExpiredToken => "expired_token",
            Refusal::TooManyLogins => "too_many_logins",
            Refusal::UnknownRole => "unknown_role",
            Refusal::DurationTooLong => "duration_too_long",
            Refusal::BadDuration => "bad_duration",
            Refusal::BadHost => "bad_host",
            Refusal::HostNotInRole => "host_not_in_role",
            Refusal::HostInSeveralGroups => "host_in_several_groups",
            Refusal::ReasonRequired => "reason_required",
            Refusal::BadReason => "bad_reason",
            Refusal::TicketRequired => "ticket_required",
            Refusal::TicketMismatch => "ticket_mismatch",
            Refusal::BadTicket => "bad_ticket",
            Refusal::BadComment => "bad_comment",
            Refusal::BadStart => "bad_start",
            Refusal::NoBreakGlass => "no_break_glass",
            Refusal::Widening => "widening",
            Refusal::BadPublicKey => "bad_public_key",
            Refusal::BadScope => "bad_scope",
            Refusal::BadTarget => "bad_target",
            Refusal::BadKind => "bad_kind",
            Refusal::BadSerial => "bad_serial",
            Refusal::BadRequestId => "bad_request_id",
            Refusal::BadUsername => "bad_username",
            Refusal::BadFingerprint => "bad_fingerprint",
            Refusal::ConfirmRequired => "confirm_required",
            Refusal::BadPeriod => "bad_period",
            Refusal::BadFilter => "bad_filter",
            Refusal::InvalidSessionRecord => "invalid_session_record",
            Refusal::InvalidBastionEvent => "invalid_bastion_event",
            Refusal::Invalid => "invalid",
            Refusal::AccountDisabled => "account_disabled",
            Refusal::PasswordExpired => "password_expired",
            Refusal::DirectoryEntryUnusable => "directory_entry_unusable",
            Refusal::DirectoryUnavailable => "directory_unavailable",
            Refusal::TicketRefused => "ticket_refused",
            Refusal::TicketSystemUnavailable => "ticket_system_unavailable",
            Refusal::PolicyHookDenied => "policy_hook_denied",
            Refusal::PolicyHookUnavailable => "policy_hook_unavailable",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl From<&TextError> for Refusal {
    fn from(e: &TextError) -> Self {
        let field = match e {
            TextError::TooLong { field, .. } | TextError::Forbidden { field, .. } => *field,
        };
        match field {
            TextField::Reason | TextField::ShortReason => Refusal::BadReason,
            TextField::Ticket => Refusal::BadTicket,
            TextField::Comment => Refusal::BadComment,
        }
    }
}

impl From<&PolicyRefusal> for Refusal {
    fn from(r: &PolicyRefusal) -> Self {
        match r {
            PolicyRefusal::UnknownRole { .. } => Refusal::UnknownRole,
            PolicyRefusal::NotAllowed { .. } => Refusal::RoleNotAllowed,
            PolicyRefusal::DurationTooLong { .. } => Refusal::DurationTooLong,
            PolicyRefusal::BadDuration(_) => Refusal::BadDuration,
            PolicyRefusal::NoHosts | PolicyRefusal::BadHost(_) => Refusal::BadHost,
            PolicyRefusal::HostNotInRole { .. } => Refusal::HostNotInRole,
            PolicyRefusal::ReasonRequired(_) => Refusal::ReasonRequired,
            PolicyRefusal::BadText(e) => Refusal::from(e),
            PolicyRefusal::TicketRequired { .. } | PolicyRefusal::IncidentRequired => {
                Refusal::TicketRequired
            }
            PolicyRefusal::TicketMismatch { .. } => Refusal::TicketMismatch,
            PolicyRefusal::BadStart => Refusal::BadStart,
            PolicyRefusal::NoBreakGlass(_) => Refusal::NoBreakGlass,
            PolicyRefusal::HostInSeveralGroups { .. } => Refusal::HostInSeveralGroups,
        }
    }
}

impl From<&DecisionRefusal> for Refusal {
    fn from(r: &DecisionRefusal) -> Self {
        match r {
            DecisionRefusal::NotPending(_) => Refusal::NotPending,
            DecisionRefusal::OwnRequest => Refusal::OwnRequest,
            DecisionRefusal::AlreadyApproved => Refusal::AlreadyApproved,
            DecisionRefusal::NotApprover { .. } | DecisionRefusal::NotRoleApprover(_) => {
                Refusal::NotApprover
            }
            DecisionRefusal::Widening(_) => Refusal::Widening,
            DecisionRefusal::BadComment(e) => Refusal::from(e),
            DecisionRefusal::NotRequester => Refusal::NotRequester,
            DecisionRefusal::NotActive(_) => Refusal::NotActive,
        }
    }
}

impl From<&IssueRefusal> for Refusal {
    fn from(r: &IssueRefusal) -> Self {
        match r {
            IssueRefusal::NotYours => Refusal::NotYours,
            IssueRefusal::NotApproved(_) => Refusal::NotApproved,
            IssueRefusal::NotStarted(_) => Refusal::WindowNotStarted,
            IssueRefusal::WindowEnded(_) => Refusal::WindowEnded,
            IssueRefusal::PolicyNotSatisfied(_) => Refusal::PolicyNotSatisfied,
            IssueRefusal::RequesterNotAllowed(_) => Refusal::RoleNotAllowed,
            IssueRefusal::ContentChanged => Refusal::ContentChanged,
            IssueRefusal::RoleGone(_) => Refusal::UnknownRole,
            IssueRefusal::NeedsReapproval(_) => Refusal::NeedsReapproval,
            IssueRefusal::GrantConflict(_) => Refusal::RoleChanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use tpa_core::{RequestState, RoleName};

    use super::*;

    // issue 14: the typed refusals of tpa-core keep their stable codes when
    // they become a `Refusal`.
    #[test]
    fn core_refusals_keep_their_codes() {
        let role = RoleName::parse("db").unwrap();
        let decisions = [
            DecisionRefusal::NotPending(RequestState::Denied),
            DecisionRefusal::OwnRequest,
            DecisionRefusal::AlreadyApproved,
            DecisionRefusal::NotApprover {
                group: "sre".to_owned(),
            },
            DecisionRefusal::NotRoleApprover(role.clone()),
            DecisionRefusal::Widening("x".to_owned()),
            DecisionRefusal::NotRequester,
            DecisionRefusal::NotActive(RequestState::Expired),
        ];
        for r in &decisions {
            assert_eq!(Refusal::from(r).code(), r.code(), "{r:?}");
        }
        let issues = [
            IssueRefusal::NotYours,
            IssueRefusal::NotApproved(RequestState::Pending),
            IssueRefusal::PolicyNotSatisfied(role.clone()),
            IssueRefusal::RequesterNotAllowed(role.clone()),
            IssueRefusal::ContentChanged,
            IssueRefusal::RoleGone(role.clone()),
            IssueRefusal::NeedsReapproval("x".to_owned()),
        ];
        for r in &issues {
            assert_eq!(Refusal::from(r).code(), r.code(), "{r:?}");
        }
        let policies = [
            PolicyRefusal::NoHosts,
            PolicyRefusal::BadStart,
            PolicyRefusal::IncidentRequired,
            PolicyRefusal::NoBreakGlass(role),
        ];
        for r in &policies {
            assert_eq!(Refusal::from(r).code(), r.code(), "{r:?}");
        }
    }
}
