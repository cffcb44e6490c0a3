//! One submission's questions to the providers, before its transaction:
//! the role's ticket check, then (for a request that would wait for its
//! stages) whether the requester is on call. The answers are values
//! ([`Prechecks`]) that the workflow applies and records; a provider that
//! fails never approves, and every text a provider could influence is made
//! printable and capped before it is kept.

use chrono::{DateTime, Utc};
use tpa_core::{ApprovalPath, Policy, RequestInput, User, VerifiedEmail};

use super::client::{self, ProviderError};
use super::{BoxFuture, IncidentAnswer, Integrations, OnCallAnswer, TicketAnswer};
use crate::config::{RoleOnCall, RoleTicketCheck, WhenDown};
use crate::refusal::Refusal;
use crate::store::integrations::CheckRow;

/// An on-call approval to apply inside the submission's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallApproval {
    /// The configured provider's name.
    pub provider: String,
    /// The schedule.
    pub schedule: String,
    /// The provider's answer id.
    pub evidence: String,
}

/// What the providers answered for one submission, before its transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prechecks {
    /// Set when the requester is on call and the role's rule applies.
    pub on_call: Option<OnCallApproval>,
    /// What each check found, for the audit trail and the request page.
    pub checks: Vec<CheckRow>,
    /// Set when a ticket check refuses the request: (code, message).
    pub refusal: Option<(Refusal, String)>,
}

impl Integrations {
    /// Asks the providers what the role of `input` needs: its ticket check,
    /// then (for a request that would wait for its stages) whether the
    /// requester is on call. `email` is the requester's verified email.
    pub async fn precheck(
        &self,
        policy: &Policy,
        user: &User,
        email: Option<&VerifiedEmail>,
        input: &RequestInput,
        now: DateTime<Utc>,
    ) -> Prechecks {
        let mut out = Prechecks::default();
        // A request the policy refuses is refused (and audited) by the
        // workflow; no provider is asked about it.
        let Ok(checked) = policy.check_request(user, input, now) else {
            return out;
        };
        if let (Some(rule), Some(ticket)) = (
            self.config.role_tickets.get(&checked.role),
            checked.ticket.as_deref(),
        ) {
            let break_glass = checked.path == ApprovalPath::BreakGlass;
            self.check_ticket(rule, ticket, email, break_glass, now, &mut out)
                .await;
            if out.refusal.is_some() {
                return shown(out);
            }
        }
        if checked.path == ApprovalPath::Stages
            && let Some(rule) = self.config.role_on_call.get(&checked.role)
        {
            self.check_on_call(rule, email, checked.ticket.as_deref(), input, now, &mut out)
                .await;
        }
        shown(out)
    }

    async fn check_ticket(
        &self,
        rule: &RoleTicketCheck,
        ticket: &str,
        email: Option<&VerifiedEmail>,
        break_glass: bool,
        now: DateTime<Utc>,
        out: &mut Prechecks,
    ) {
        let row = |outcome: &str, summary: String, answer_id: Option<String>| CheckRow {
            kind: "ticket".to_owned(),
            provider: rule.system.clone(),
            outcome: outcome.to_owned(),
            summary,
            answer_id,
            at: now,
        };
        let Some(system) = self.ticket_system(&rule.system) else {
            out.refusal = Some((
                Refusal::TicketRefused,
                "the ticket system is not configured".into(),
            ));
            return;
        };
        match within_deadline(system.check(ticket, rule, email)).await {
            Ok(TicketAnswer::Open { id, detail }) => out.checks.push(row("open", detail, Some(id))),
            Ok(TicketAnswer::Refused { why }) => {
                out.checks.push(row("refused", why.clone(), None));
                out.refusal = Some((
                    Refusal::TicketRefused,
                    format!("ticket {ticket} refused: {why}"),
                ));
            }
            Err(e) => {
                let why = format!("ticket system {} {e}", rule.system);
                // Break-glass is for emergencies, when ticket systems may be
                // down too: an outage flags it rather than refusing it.
                if rule.when_down == WhenDown::AllowAndFlag || break_glass {
                    out.checks.push(row(
                        "flagged",
                        format!("{why}; the ticket was not checked (allowed and flagged)"),
                        None,
                    ));
                } else {
                    out.checks.push(row(e.code(), why.clone(), None));
                    out.refusal = Some((
                        Refusal::TicketSystemUnavailable,
                        format!(
                            "{why}; the ticket cannot be checked, so the request is refused; try again shortly"
                        ),
                    ));
                }
            }
        }
    }

    async fn check_on_call(
        &self,
        rule: &RoleOnCall,
        email: Option<&VerifiedEmail>,
        ticket: Option<&str>,
        input: &RequestInput,
        now: DateTime<Utc>,
        out: &mut Prechecks,
    ) {
        let mut row = |outcome: &str, summary: String, answer_id: Option<String>| {
            out.checks.push(CheckRow {
                kind: "on_call".to_owned(),
                provider: rule.provider.clone(),
                outcome: outcome.to_owned(),
                summary,
                answer_id,
                at: now,
            });
        };
        let fallback = "; the request waits for its approval stages";
        let Some(provider) = self.on_call_provider(&rule.provider) else {
            row(
                "unavailable",
                format!("on-call provider not configured{fallback}"),
                None,
            );
            return;
        };
        if input.start.is_some() {
            row(
                "not_applicable",
                format!("a scheduled request is not approved on call{fallback}"),
                None,
            );
            return;
        }
        let Some(email) = email else {
            row(
                "no_verified_email",
                format!("your login has no verified email to match an on-call user by{fallback}"),
                None,
            );
            return;
        };
        if let Some(service) = &rule.incident_service {
            let Some(incident) = ticket else {
                row(
                    "no_incident",
                    format!(
                        "on-call approval needs an open incident of service {service} as the ticket{fallback}"
                    ),
                    None,
                );
                return;
            };
            match within_deadline(provider.open_incident(service, incident)).await {
                Ok(IncidentAnswer::Open { .. }) => {}
                Ok(IncidentAnswer::NotOpen { why }) => {
                    row("no_incident", format!("{why}{fallback}"), None);
                    return;
                }
                Err(e) => {
                    row(
                        e.code(),
                        format!("on-call provider {} {e}{fallback}", rule.provider),
                        None,
                    );
                    return;
                }
            }
        }
        match within_deadline(provider.on_call(&rule.schedule, email)).await {
            Ok(OnCallAnswer::OnCall { evidence }) => {
                row(
                    "on_call",
                    format!("{email} is on call now in schedule {}", rule.schedule),
                    Some(evidence.clone()),
                );
                out.on_call = Some(OnCallApproval {
                    provider: rule.provider.clone(),
                    schedule: rule.schedule.clone(),
                    evidence,
                });
            }
            Ok(OnCallAnswer::NotOnCall { detail }) => {
                row("not_on_call", format!("{detail}{fallback}"), None);
            }
            Err(e) => row(
                e.code(),
                format!("on-call provider {} {e}{fallback}", rule.provider),
                None,
            ),
        }
    }
}

/// One question to a provider, pages and all, within the 3 s deadline
/// (each exchange has it too; this bounds a paginated answer as a whole).
async fn within_deadline<T>(
    question: BoxFuture<'_, Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    tokio::time::timeout(client::TIMEOUT, question)
        .await
        .unwrap_or(Err(ProviderError::Timeout))
}

/// The longest provider-derived text kept (ids and summaries quote what a
/// provider sent).
const MAX_SHOWN: usize = 500;

/// `out` with every text a provider could have influenced made printable
/// (control, format and bidi characters replaced) and cut to [`MAX_SHOWN`]
/// characters, before it reaches the audit trail, pages and terminals.
fn shown(mut out: Prechecks) -> Prechecks {
    let clean = |t: &str| tpa_core::text::printable(t, false, MAX_SHOWN);
    for c in &mut out.checks {
        c.summary = clean(&c.summary);
        c.answer_id = c.answer_id.as_deref().map(clean);
    }
    if let Some(o) = &mut out.on_call {
        o.evidence = clean(&o.evidence);
    }
    if let Some((_, message)) = &mut out.refusal {
        *message = clean(message);
    }
    out
}
