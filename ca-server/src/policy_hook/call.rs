//! The policy hook's call body, built from a checked submission or from a
//! stored request (with its content hash) about to get a certificate.

use chrono::{DateTime, Utc};
use tpa_core::api::{HookRequest, HookRequester, Person, PolicyHookCall};
use tpa_core::{AccessRequest, CheckedRequest, HostName, RoleName, User};

use crate::config::HookStage;
use tpa_core::api::GrantView;
use tpa_core::audit::format_time;

fn requester(user: &User) -> HookRequester {
    HookRequester {
        person: Person {
            issuer: user.identity.issuer().to_owned(),
            subject: user.identity.subject().to_owned(),
            username: Some(user.username.to_string()),
        },
        groups: user.groups.iter().map(ToString::to_string).collect(),
    }
}

fn call(
    stage: HookStage,
    user: &User,
    request: HookRequest,
    grant: tpa_core::api::GrantView,
    public_key_fingerprint: Option<String>,
    now: DateTime<Utc>,
) -> PolicyHookCall {
    PolicyHookCall {
        version: 1,
        nonce: String::new(),
        stage: stage.as_str().to_owned(),
        time: format_time(now),
        requester: requester(user),
        request,
        grant,
        public_key_fingerprint,
    }
}

/// The call at submission: the request as checked by the policy, before it
/// exists (no id, no content hash).
pub fn submit_call(user: &User, checked: &CheckedRequest, now: DateTime<Utc>) -> PolicyHookCall {
    let request = HookRequest {
        id: None,
        role: checked.role.to_string(),
        hosts: checked.hosts.iter().map(HostName::to_string).collect(),
        duration_secs: checked.duration.as_secs(),
        reason: checked.reason.clone(),
        ticket: checked.ticket.clone(),
        start: checked.start.map(format_time),
        approval_path: checked.path.as_str().to_owned(),
        content_hash: None,
    };
    call(
        HookStage::Submit,
        user,
        request,
        GrantView::of(&checked.grant),
        None,
        now,
    )
}

/// The call at issuance: the stored request with its content hash, the
/// snapshot a certificate would be built from, and the key to certify.
/// `None` for a request stored before grant snapshots existed (issuance
/// refuses those anyway).
pub fn issue_call(
    user: &User,
    r: &AccessRequest,
    fingerprint: String,
    now: DateTime<Utc>,
) -> Option<PolicyHookCall> {
    stored_call(HookStage::Issue, user, r, Some(fingerprint), now)
}

/// The call when the open approval stage is the automated check: the stored
/// request with the content hash an approval would bind.
pub fn approve_call(user: &User, r: &AccessRequest, now: DateTime<Utc>) -> Option<PolicyHookCall> {
    stored_call(HookStage::Approve, user, r, None, now)
}

fn stored_call(
    stage: HookStage,
    user: &User,
    r: &AccessRequest,
    fingerprint: Option<String>,
    now: DateTime<Utc>,
) -> Option<PolicyHookCall> {
    let grant = GrantView::of(r.grant.as_ref()?);
    let request = HookRequest {
        id: Some(r.id.to_string()),
        role: r.role.to_string(),
        hosts: r.hosts.iter().map(HostName::to_string).collect(),
        duration_secs: r.duration.as_secs(),
        reason: r.reason.clone(),
        ticket: r.ticket.clone(),
        start: r.start.map(format_time),
        approval_path: r.path.as_str().to_owned(),
        content_hash: Some(r.content_hash()),
    };
    Some(call(stage, user, request, grant, fingerprint, now))
}

/// The `stage` of the read-only test call of `tpa-ca integrations test`.
pub const TEST_STAGE: &str = "test";

/// The read-only test call of `tpa-ca integrations test`: `"stage": "test"`,
/// about no request (no id, no hosts, no duration, an empty grant), from the
/// requester `tpa-ca integrations test` with no groups, signed like every
/// call. `role` is one the hook is asked about, so that a hook routing on it
/// answers as usual. The CA acts on neither answer; the command only checks
/// that it is a valid, signed answer with the call's nonce.
pub fn test_call(role: Option<&RoleName>, now: DateTime<Utc>) -> PolicyHookCall {
    PolicyHookCall {
        version: 1,
        nonce: String::new(),
        stage: TEST_STAGE.to_owned(),
        time: format_time(now),
        requester: HookRequester {
            person: Person {
                issuer: "tpa:integrations-test".to_owned(),
                subject: "tpa-ca integrations test".to_owned(),
                username: None,
            },
            groups: Vec::new(),
        },
        request: HookRequest {
            id: None,
            role: role.map(ToString::to_string).unwrap_or_default(),
            hosts: Vec::new(),
            duration_secs: 0,
            reason: "tpa-ca integrations test: a read-only test call; nothing is requested"
                .to_owned(),
            ticket: None,
            start: None,
            approval_path: TEST_STAGE.to_owned(),
            content_hash: None,
        },
        grant: GrantView {
            principals: Vec::new(),
            extensions: Vec::new(),
            force_command: None,
            source_address: None,
            cert_ttl: "0s".to_owned(),
        },
        public_key_fingerprint: None,
    }
}
