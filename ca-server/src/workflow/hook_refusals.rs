//! The audit event of a request or certificate the policy hook refused.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::HookStage;
use crate::store::Transact;
use crate::store::{self, StoreError};
use crate::workflow::Actor;
use tpa_core::audit::{NewEvent, Outcome};

/// Records a refusal by the hook (`code` is `policy_hook_denied` or
/// `policy_hook_unavailable`): `request.submit` at submission, `cert.issue`
/// at issuance, `request.approve` at the automated check, outcome `denied`. A failure to record is an error, so the
/// refusal is never silent.
#[allow(
    clippy::too_many_arguments,
    reason = "one audit event, every field named"
)]
pub fn record_refusal(
    conn: &mut impl Transact,
    actor: &Actor,
    stage: HookStage,
    role: &str,
    request_id: Option<&str>,
    code: &str,
    why: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (action, object) = match stage {
        HookStage::Submit => ("request.submit", "request:none".to_owned()),
        HookStage::Issue => ("cert.issue", "cert:none".to_owned()),
        HookStage::Approve => (
            "request.approve",
            format!("request:{}", request_id.unwrap_or("none")),
        ),
    };
    let event = NewEvent {
        time: now,
        actor: actor.id.clone(),
        source: actor.source.clone(),
        action: action.to_owned(),
        object,
        outcome: Outcome::Denied,
        reason: format!("policy hook: {why}"),
        details: json!({
            "code": code,
            "role": role,
            "request_id": request_id,
            "policy_hook": stage.as_str(),
        }),
    };
    conn.write(|tx| store::audit::append(tx, &event).map(drop))
}
