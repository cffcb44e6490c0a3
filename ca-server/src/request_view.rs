//! Turns a request (domain) into its wire form (`tpa_core::api::RequestView`).

use chrono::{DateTime, Utc};
use tpa_core::api::{
    ApprovalView, CheckView, GrantView, OnCallApprovalView, Person, RequestView, StillNeeded,
};
use tpa_core::{AccessRequest, ApprovalPath, Grant, HostName, Identity, Policy, RequestState};

use crate::audit::format_time;

fn person(identity: &Identity, username: Option<&str>) -> Person {
    Person {
        issuer: identity.issuer().to_owned(),
        subject: identity.subject().to_owned(),
        username: username.map(str::to_owned),
    }
}

/// The wire form of a grant snapshot.
pub fn grant_view(g: &Grant) -> GrantView {
    GrantView {
        principals: g.principals.iter().map(ToString::to_string).collect(),
        extensions: g.extensions.iter().map(|e| e.name().to_owned()).collect(),
        force_command: g
            .critical_options
            .force_command
            .as_ref()
            .map(|c| c.as_str().to_owned()),
        source_address: g
            .critical_options
            .source_address
            .as_ref()
            .map(ToString::to_string),
        cert_ttl: g.cert_ttl.to_string(),
    }
}

/// The view of `r` at `now` under `policy`.
pub fn view(r: &AccessRequest, policy: &Policy, now: DateTime<Utc>) -> RequestView {
    let role = policy.role(&r.role);
    let still_needed = match (r.state, role) {
        (RequestState::Pending, Some(role)) => r.open_stage(role).and_then(|(i, n)| {
            role.stages.get(i).map(|s| StillNeeded {
                stage: i + 1,
                group: s.group.to_string(),
                approvals: n,
            })
        }),
        _ => None,
    };
    RequestView {
        id: r.id.to_string(),
        state: r.state.as_str().to_owned(),
        active: r.state == RequestState::Approved
            && r.window.is_some_and(|w| w.start <= now && now < w.end),
        role: r.role.to_string(),
        hosts: r.hosts.iter().map(HostName::to_string).collect(),
        duration_secs: r.duration.as_secs(),
        duration: r.duration.to_string(),
        reason: r.reason.clone(),
        ticket: r.ticket.clone(),
        requester: person(&r.requester, Some(r.requester_username.as_str())),
        approval_path: match r.path {
            ApprovalPath::Stages => "stages",
            ApprovalPath::Auto => "auto",
            ApprovalPath::BreakGlass => "break_glass",
            ApprovalPath::OnCall => "on_call",
        }
        .to_owned(),
        created_at: format_time(r.created_at),
        pending_until: format_time(r.pending_until),
        start: r.start.map(format_time),
        window_start: r.window.map(|w| format_time(w.start)),
        window_end: r.window.map(|w| format_time(w.end)),
        approvals: r
            .approvals
            .iter()
            .map(|a| ApprovalView {
                approver: person(&a.approver, Some(a.approver_username.as_str())),
                stage: a.stage + 1,
                // As recorded, never re-derived from today's configuration.
                group: Some(a.group.to_string()),
                at: format_time(a.at),
                comment: a.comment.clone(),
            })
            .collect(),
        still_needed,
        decided_by: r.decided_by.as_ref().map(|d| person(d, None)),
        comment: r.comment.clone(),
        grant: r.grant.as_ref().map(grant_view),
        on_call_approval: r.automated.as_ref().map(|a| OnCallApprovalView {
            source: a.source.clone(),
            answer_id: a.evidence.clone(),
            at: format_time(a.at),
            content_hash: a.content_hash.clone(),
        }),
        checks: Vec::new(),
    }
}

/// `view` with the on-call and ticket checks recorded at submission.
pub fn with_checks(
    mut view: RequestView,
    rows: &[crate::store::integrations::CheckRow],
) -> RequestView {
    view.checks = rows
        .iter()
        .map(|c| CheckView {
            kind: c.kind.clone(),
            provider: c.provider.clone(),
            outcome: c.outcome.clone(),
            summary: c.summary.clone(),
            answer_id: c.answer_id.clone(),
            at: format_time(c.at),
        })
        .collect();
    view
}
