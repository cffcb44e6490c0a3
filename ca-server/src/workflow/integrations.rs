//! The submission's part of issue 17's integrations, inside its transaction:
//! an on-call answer approves the new request against its snapshot
//! (`AccessRequest::approve_on_call`), and what every check found is
//! recorded with it and in the audit trail.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tpa_core::{AccessRequest, Policy};

use crate::integrations::Prechecks;
use crate::store::integrations::CheckRow;
use tpa_core::audit::{NewEvent, Outcome, format_time};

/// Applies an on-call answer to a just-submitted request when the role's
/// rule still allows it; returns the checks to record (with a note when the
/// answer could not be applied).
pub fn apply_on_call(
    policy: &Policy,
    request: &mut AccessRequest,
    prechecks: &Prechecks,
    now: DateTime<Utc>,
) -> Vec<CheckRow> {
    let mut checks = prechecks.checks.clone();
    let Some(on_call) = &prechecks.on_call else {
        return checks;
    };
    let Some(role) = policy.role(&request.role) else {
        return checks;
    };
    if let Err(why) = request.approve_on_call(role, &on_call.evidence, now) {
        checks.push(CheckRow {
            kind: "on_call".to_owned(),
            provider: on_call.provider.clone(),
            outcome: "not_applicable".to_owned(),
            summary: format!("{why}; the request waits for its approval stages"),
            answer_id: None,
            at: now,
        });
    }
    checks
}

/// The checks as the audit details and webhooks show them.
pub fn checks_json(checks: &[CheckRow]) -> Value {
    Value::Array(
        checks
            .iter()
            .map(|c| {
                json!({
                    "kind": c.kind,
                    "provider": c.provider,
                    "outcome": c.outcome,
                    "summary": c.summary,
                    "answer_id": c.answer_id,
                    "at": format_time(c.at),
                })
            })
            .collect(),
    )
}

/// The audit event of an on-call approval: the system approved, on the
/// provider's word (which schedule, which answer), the exact content hash.
pub fn on_call_event(
    request: &AccessRequest,
    prechecks: &Prechecks,
    mut details: Value,
    now: DateTime<Utc>,
) -> NewEvent {
    let (provider, schedule, evidence) = prechecks
        .on_call
        .as_ref()
        .map(|o| {
            (
                o.provider.as_str(),
                o.schedule.as_str(),
                o.evidence.as_str(),
            )
        })
        .unwrap_or_default();
    details["on_call"] = json!({
        "on_call": true,
        "provider": provider,
        "schedule": schedule,
        "answer_id": evidence,
        "source": request.automated.as_ref().map(|a| a.source.as_str()),
        "approved_content_hash": request.automated.as_ref().map(|a| a.content_hash.as_str()),
    });
    NewEvent {
        time: now,
        actor: "system".to_owned(),
        source: format!("on-call:{provider}"),
        action: "request.approve".to_owned(),
        object: format!("request:{}", request.id),
        outcome: Outcome::Success,
        reason: format!(
            "auto-approved: {} is on call now in schedule {schedule} ({provider})",
            request.requester_username
        ),
        details,
    }
}
