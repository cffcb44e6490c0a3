//! Turns a request (domain) into its wire form ([`RequestView`]): one place
//! for the API, the web pages and the webhooks.

use super::{ApprovalView, GrantView, OnCallApprovalView, Person, RequestView, StillNeeded};
use crate::audit::format_time;
use crate::{AccessRequest, Grant, HostName, Identity, Policy, RequestState};
use chrono::{DateTime, Utc};

fn person(identity: &Identity, username: Option<&str>) -> Person {
    Person {
        issuer: identity.issuer().to_owned(),
        subject: identity.subject().to_owned(),
        username: username.map(str::to_owned),
    }
}

impl GrantView {
    /// The wire form of a grant snapshot.
    pub fn of(g: &Grant) -> Self {
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
}

impl RequestView {
    /// The view of `r` at `now` under `policy`.
    pub fn of(r: &AccessRequest, policy: &Policy, now: DateTime<Utc>) -> Self {
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
            approval_path: r.path.as_str().to_owned(),
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
            grant: r.grant.as_ref().map(GrantView::of),
            on_call_approval: r.automated.as_ref().map(|a| OnCallApprovalView {
                source: a.source.clone(),
                answer_id: a.evidence.clone(),
                at: format_time(a.at),
                content_hash: a.content_hash.clone(),
            }),
            checks: Vec::new(),
        }
    }
}
