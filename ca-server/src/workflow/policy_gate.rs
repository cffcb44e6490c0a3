//! The policy hook's place in the request paths: asked before a submission
//! is stored and before a certificate is signed, outside any database
//! transaction (an HTTP call never holds the writer). A refusal is audited
//! and answered with a stable code: `policy_hook_denied` (403, the hook's
//! reason shown) or `policy_hook_unavailable` (503 with Retry-After: no valid
//! answer in time, so nothing is granted).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tpa_core::api::PolicyHookCall;
use tpa_core::{AccessRequest, RequestId, RequestInput, RequestState, SubjectKey, User};

use super::Actor;
use super::error::{WorkflowError, refused};
use super::hook_refusals::record_refusal;
use super::requests as wf;
use super::service::Services;
use crate::config::HookStage;
use crate::policy_hook::{PolicyHook, Verdict, approve_call, hook_user, issue_call, submit_call};
use crate::refusal::Refusal;
use crate::store::Transact;
use crate::store::requests;

impl Services {
    /// Asks the hook about a submission; `Ok` when it allows or does not apply.
    /// A request the policy itself refuses is left to the workflow (which
    /// audits that refusal); the hook is not asked about it.
    pub(crate) async fn hook_at_submission(
        &self,
        user: &User,
        input: &RequestInput,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(), WorkflowError> {
        let Some(hook) = self.policy_hook.clone() else {
            return Ok(());
        };
        let Ok(checked) = self.config.policy.check_request(user, input, now) else {
            return Ok(());
        };
        if !hook.applies(&checked.role, HookStage::Submit) {
            return Ok(());
        }
        let verdict = hook.ask(submit_call(user, &checked, now)).await;
        let role = checked.role.to_string();
        self.settle(source, user, HookStage::Submit, role, None, verdict)
            .await
    }

    /// Asks the hook before a certificate is signed for request `id`. Returns
    /// the content hash the hook allowed (the issuance transaction refuses if
    /// the request no longer hashes to it), or `None` when the hook does not
    /// apply. Requests the caller cannot have a certificate for are left to the
    /// issuance rules, which refuse them; the hook never hears of them.
    pub async fn hook_at_issuance(
        &self,
        user: &User,
        id: &RequestId,
        public_key: &str,
        source: &str,
    ) -> Result<Option<String>, WorkflowError> {
        let Some(hook) = self.policy_hook.clone() else {
            return Ok(None);
        };
        let rid = id.clone();
        let stored = self
            .read(move |conn| Ok(requests::load(conn, &rid)?))
            .await?;
        let Some(r) =
            stored.filter(|r| r.requester == user.identity && r.state == RequestState::Approved)
        else {
            return Ok(None);
        };
        if !hook.applies(&r.role, HookStage::Issue) {
            return Ok(None);
        }
        let Ok(subject) = SubjectKey::parse(public_key, &self.signer.ca_key_data()) else {
            return Ok(None);
        };
        let now = Utc::now();
        let Some(call) = issue_call(user, &r, subject.fingerprint(), now) else {
            return Ok(None);
        };
        let verdict = hook.ask(call).await;
        let hash = r.content_hash();
        self.settle(
            source,
            user,
            HookStage::Issue,
            r.role.to_string(),
            Some(r.id.to_string()),
            verdict,
        )
        .await
        .map(|()| Some(hash))
    }

    /// Audits a refusal and turns it into the client's error.
    async fn settle(
        &self,
        source: &str,
        user: &User,
        stage: HookStage,
        role: String,
        request_id: Option<String>,
        verdict: Verdict,
    ) -> Result<(), WorkflowError> {
        let (code, why, message) = match verdict {
            Verdict::Allow => return Ok(()),
            Verdict::Deny { reason } => (
                Refusal::PolicyHookDenied,
                format!("denied: {reason}"),
                format!("the policy hook refused this: {reason}"),
            ),
            Verdict::Unavailable { why } => {
                tracing::warn!(stage = stage.as_str(), %why, "policy hook gave no valid answer; refused");
                (
                    Refusal::PolicyHookUnavailable,
                    format!("no valid answer: {why}"),
                    "the policy hook did not give a valid answer in time, so nothing was granted; \
                 try again in a minute, or ask an administrator to check the hook"
                        .to_owned(),
                )
            }
        };
        let actor = Actor::user(user, source);
        self.write(move |conn| {
            record_refusal(
                conn,
                &actor,
                stage,
                &role,
                request_id.as_deref(),
                code.code(),
                &why,
                Utc::now(),
            )
            .map_err(WorkflowError::from)
        })
        .await?;
        Err(refused(code, message))
    }

    /// The automated check: when the open approval stage of `r` is the hook's
    /// group (`[policy_hook] approves_as`), asks the hook and records its
    /// decision as that stage's approval (or a denial) against the content hash
    /// it saw, through the same workflow as a person's. No valid answer leaves
    /// the request pending (audited). Returns the request as it stands after.
    /// Never fails the caller's own action, which already committed.
    pub(crate) async fn automated_check(&self, r: AccessRequest) -> AccessRequest {
        let Some((hook, approver, call)) = self.automated_check_due(&r) else {
            return r;
        };
        let seen = r.content_hash();
        let verdict = hook.ask(call).await;
        let (st, id, role_name) = (self.clone(), r.id.clone(), r.role.to_string());
        let decided = self
            .write(move |conn| {
                st.record_hook_verdict(conn, (&approver, &id, &role_name), seen, verdict)
            })
            .await;
        self.waiters.wake(&r.id);
        self.bell.ring();
        match decided {
            Ok(Some(after)) => after,
            Ok(None) => r,
            Err(e) => {
                tracing::warn!(request = %r.id, error = ?e, "the automated check was not recorded");
                r
            }
        }
    }

    /// The hook, its user and its call, when the open approval stage of `r`
    /// is the hook's group.
    fn automated_check_due(
        &self,
        r: &AccessRequest,
    ) -> Option<(Arc<PolicyHook>, User, PolicyHookCall)> {
        let hook = self.policy_hook.clone()?;
        let group = hook.approves_as().cloned()?;
        let role = self.config.policy.role(&r.role)?;
        let open = r
            .open_stage(role)
            .and_then(|(stage, _)| role.stages.get(stage));
        if r.state != RequestState::Pending
            || !hook.applies(&r.role, HookStage::Approve)
            || open.is_none_or(|s| s.group != group)
        {
            return None;
        }
        let approver = hook_user(group)?;
        // The requester as of now (local accounts re-read; others as stored).
        let probe = User {
            identity: r.requester.clone(),
            username: r.requester_username.clone(),
            display_name: String::new(),
            groups: Default::default(),
        };
        let requester = self.identities.refresh(&probe).unwrap_or(probe);
        let call = approve_call(&requester, r, Utc::now())?;
        Some((hook, approver, call))
    }

    /// Records the hook's verdict on request `id` as its approval or denial
    /// (through the same workflow as a person's), or its silence (audited,
    /// the request stays pending). The request as it stands after, if changed.
    fn record_hook_verdict(
        &self,
        conn: &mut impl Transact,
        (approver, id, role_name): (&User, &RequestId, &str),
        seen: String,
        verdict: Verdict,
    ) -> Result<Option<AccessRequest>, WorkflowError> {
        let now = Utc::now();
        let policy = &self.config.policy;
        let source = crate::config::HOOK_USERNAME;
        match verdict {
            Verdict::Allow => {
                let input = wf::ApproveInput {
                    seen_content_hash: Some(seen),
                    ..wf::ApproveInput::default()
                };
                wf::approve(
                    conn,
                    policy,
                    &self.identities,
                    approver,
                    id,
                    input,
                    source,
                    now,
                )
                .map(|(r, _)| Some(r))
            }
            Verdict::Deny { reason } => {
                let comment = format!("automated check: {reason}");
                wf::deny(conn, policy, approver, id, &comment, source, now).map(Some)
            }
            Verdict::Unavailable { why } => {
                tracing::warn!(request = %id, %why, "policy hook gave no valid answer; the automated check stays open");
                let actor = Actor::user(approver, source);
                record_refusal(
                    conn,
                    &actor,
                    HookStage::Approve,
                    role_name,
                    Some(id.as_str()),
                    "policy_hook_unavailable",
                    &format!("no valid answer: {why}"),
                    now,
                )?;
                Ok(None)
            }
        }
    }
}
