//! The external policy hook: a signed HTTP call at submission and at issuance
//! that may deny a request (for rules TPA does not have: change freezes, asset
//! ownership, HR status), like step-ca's authorizing webhooks.
//!
//! The call is signed as every TPA webhook (`X-TPA-Timestamp`,
//! `X-TPA-Signature`, [`crate::notify::signature`]); the answer must be signed
//! the same way with the same secret and repeat the call's nonce, so neither a
//! forged nor a replayed answer counts. Anything but a valid, signed `allow`
//! within the timeout refuses: a timeout, a connection error, a status other
//! than 200, an answer larger than [`MAX_ANSWER`], a bad signature, a body that
//! is not the expected JSON or lacks a field (fail closed). Extra fields are
//! ignored, so hooks may add their own.

use std::time::Duration;

use chrono::Utc;
use rand::RngExt as _;
use subtle::ConstantTimeEq as _;
use tpa_core::api::{PolicyHookAnswer, PolicyHookCall};
use tpa_core::{GroupName, RoleName};

use crate::config::{HookStage, PolicyHookConfig};
use crate::notify::{signature, without_url};

mod call;

pub use call::{TEST_STAGE, approve_call, issue_call, submit_call, test_call};

pub use crate::auth::identity::automated::{HOOK_ISSUER, hook_user};

/// The largest answer read, in bytes; a larger one refuses.
pub const MAX_ANSWER: usize = 64 * 1024;
/// Characters of the hook's deny reason shown to the requester.
const REASON_CHARS: usize = 300;

/// What the hook said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A valid, signed `allow`.
    Allow,
    /// A valid, signed `deny` with its reason (free-text rules applied).
    Deny {
        /// Shown to the requester and audited.
        reason: String,
    },
    /// No valid answer in time; the request is refused (fail closed).
    Unavailable {
        /// What was wrong, for the audit trail and the log (never the hook's body).
        why: String,
    },
}

/// The configured hook and its HTTP client.
#[derive(Debug, Clone)]
pub struct PolicyHook {
    config: PolicyHookConfig,
    client: reqwest::Client,
}

impl PolicyHook {
    /// A hook for `config`: no redirects, the configured timeout.
    pub fn new(config: PolicyHookConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A backstop only: `ask` enforces `config.timeout` over the whole
            // exchange (connect, answer, body) and names it in the refusal.
            .timeout(config.timeout + Duration::from_secs(1))
            .user_agent(concat!("tpa-ca/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the policy hook's HTTP client: {e}"))?;
        Ok(Self { config, client })
    }

    /// Whether the hook is asked about `role` at `stage`.
    pub fn applies(&self, role: &RoleName, stage: HookStage) -> bool {
        self.config.applies(role, stage)
    }

    /// The first role of `policy` the hook is asked about (at any stage).
    pub fn first_role<'p>(&self, policy: &'p tpa_core::Policy) -> Option<&'p RoleName> {
        policy.roles().map(|r| &r.name).find(|name| {
            [HookStage::Submit, HookStage::Issue, HookStage::Approve]
                .into_iter()
                .any(|stage| self.applies(name, stage))
        })
    }

    /// The approval-stage group the hook approves as, if any.
    pub fn approves_as(&self) -> Option<&GroupName> {
        self.config.approves_as.as_ref()
    }

    /// Asks the hook about `call` (its nonce is set here). Never fails: any
    /// problem is [`Verdict::Unavailable`].
    pub async fn ask(&self, mut call: PolicyHookCall) -> Verdict {
        let bytes: [u8; 16] = rand::rng().random();
        call.nonce = hex::encode(bytes);
        let deadline = self.config.timeout;
        match tokio::time::timeout(deadline, self.exchange(&call)).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(why)) => Verdict::Unavailable { why },
            Err(_) => Verdict::Unavailable {
                why: format!("no answer within {}", human(deadline)),
            },
        }
    }

    async fn exchange(&self, call: &PolicyHookCall) -> Result<Verdict, String> {
        let body = serde_json::to_vec(call).map_err(|e| format!("cannot encode the call: {e}"))?;
        let timestamp = Utc::now().timestamp();
        let sig = signature(&self.config.secret, timestamp, &body)
            .ok_or_else(|| "cannot sign the call".to_owned())?;
        let mut response = self
            .client
            .post(self.config.url.clone())
            .header("content-type", "application/json")
            .header("x-tpa-event", "policy_hook")
            .header("x-tpa-timestamp", timestamp.to_string())
            .header("x-tpa-signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", without_url(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("answered HTTP {}, not 200", response.status()));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (Some(their_time), Some(their_sig)) =
            (header("x-tpa-timestamp"), header("x-tpa-signature"))
        else {
            return Err("the answer is not signed (X-TPA-Timestamp, X-TPA-Signature)".to_owned());
        };
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the answer failed: {}", without_url(&e)))?
        {
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
            }
            answer.extend_from_slice(&chunk);
        }
        let their_time: i64 = their_time
            .trim()
            .parse()
            .map_err(|_| "X-TPA-Timestamp is not a number".to_owned())?;
        let expected = signature(&self.config.secret, their_time, &answer)
            .ok_or_else(|| "cannot check the answer's signature".to_owned())?;
        if !bool::from(expected.as_bytes().ct_eq(their_sig.trim().as_bytes())) {
            return Err("the answer's signature does not verify".to_owned());
        }
        let parsed: PolicyHookAnswer = serde_json::from_slice(&answer).map_err(|e| {
            format!(
                "the answer is not the expected JSON ({})",
                e.classify_name()
            )
        })?;
        if !bool::from(parsed.nonce.as_bytes().ct_eq(call.nonce.as_bytes())) {
            return Err("the answer's nonce is not the call's (a replayed answer?)".to_owned());
        }
        match parsed.decision.as_str() {
            "allow" => Ok(Verdict::Allow),
            "deny" => {
                let reason = parsed
                    .reason
                    .map(|r| tpa_core::text::printable(r.trim(), false, REASON_CHARS))
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| "a deny without a reason".to_owned())?;
                Ok(Verdict::Deny { reason })
            }
            _ => Err("the answer's decision is not \"allow\" or \"deny\"".to_owned()),
        }
    }
}

/// What kind of JSON problem, without the answer's own text.
trait ClassifyName {
    fn classify_name(&self) -> String;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> String {
        use serde_json::error::Category;
        match self.classify() {
            // "missing field `decision`" names our field, never their data.
            Category::Data if self.to_string().starts_with("missing field") => self
                .to_string()
                .split(" at line")
                .next()
                .unwrap_or("missing field")
                .to_owned(),
            Category::Data => "a field has the wrong type".to_owned(),
            Category::Syntax | Category::Eof => "not JSON".to_owned(),
            Category::Io => "unreadable".to_owned(),
        }
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
