//! DevOps integrations (issue 17): on-call auto-approval and ticket checks.
//!
//! One interface per kind ([`OnCall`], [`TicketSystem`]); a provider is one
//! file implementing it over the shared [`client::ProviderClient`]. The
//! providers are asked BEFORE the submission's transaction (never while it
//! holds the writer); what they answered becomes [`Prechecks`], which the
//! workflow applies and records inside the transaction. A provider that is
//! down, slow or rate-limiting never approves anything.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use tpa_core::{RequestInput, VerifiedEmail};

pub mod client;
pub mod comments;
pub mod emails;
pub mod jira;
pub mod opsgenie;
pub mod pagerduty;
mod precheck;
pub mod servicenow;
pub mod window_end;

use crate::config::{IntegrationsConfig, OnCallKind, RoleTicketCheck, TicketKind};
use client::{ProviderClient, ProviderError};

pub use precheck::{OnCallApproval, Prechecks};

/// A provider's answer in progress.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an on-call provider said about one person and schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnCallAnswer {
    /// On call now; `evidence` names the provider's entry.
    OnCall {
        /// The provider's answer id (on-call entry, request id).
        evidence: String,
    },
    /// Not on call now (or no such user).
    NotOnCall {
        /// Why, for the request page.
        detail: String,
    },
}

/// What an on-call provider said about an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentAnswer {
    /// Open, of the service asked about.
    Open {
        /// The provider's incident id.
        id: String,
    },
    /// Resolved, missing, or of another service.
    NotOpen {
        /// Why.
        why: String,
    },
}

/// An on-call provider (PagerDuty, Opsgenie).
pub trait OnCall: Send + Sync + std::fmt::Debug {
    /// Whether the user with `email` is on call now in `schedule`.
    fn on_call<'a>(
        &'a self,
        schedule: &'a str,
        email: &'a VerifiedEmail,
    ) -> BoxFuture<'a, Result<OnCallAnswer, ProviderError>>;

    /// Whether `incident` is an open incident of `service`.
    fn open_incident<'a>(
        &'a self,
        service: &'a str,
        incident: &'a str,
    ) -> BoxFuture<'a, Result<IncidentAnswer, ProviderError>>;

    /// Who is on call now in `schedule`, in one line (`tpa-ca integrations
    /// test`; read-only).
    fn probe<'a>(&'a self, schedule: &'a str) -> BoxFuture<'a, Result<String, ProviderError>>;
}

/// What a ticket system said about a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketAnswer {
    /// The ticket exists and passes the role's rule.
    Open {
        /// The provider's id of it.
        id: String,
        /// One sentence for the request page.
        detail: String,
    },
    /// Missing, closed, elsewhere, or not the requester's.
    Refused {
        /// Why, for the requester.
        why: String,
    },
}

/// A ticket system (Jira, ServiceNow).
pub trait TicketSystem: Send + Sync + std::fmt::Debug {
    /// Checks `key` against `rule`; `email` is the requester's verified email.
    fn check<'a>(
        &'a self,
        key: &'a str,
        rule: &'a RoleTicketCheck,
        email: Option<&'a VerifiedEmail>,
    ) -> BoxFuture<'a, Result<TicketAnswer, ProviderError>>;

    /// Adds `text` as a comment (Jira) or work note (ServiceNow) to `key`.
    fn comment<'a>(
        &'a self,
        key: &'a str,
        rule: &'a RoleTicketCheck,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// What TPA can read there, in one line (`tpa-ca integrations test`;
    /// read-only).
    fn probe(&self) -> BoxFuture<'_, Result<String, ProviderError>>;
}

/// The configured providers, by name.
#[derive(Debug, Default)]
pub struct Integrations {
    config: IntegrationsConfig,
    on_call: BTreeMap<String, Box<dyn OnCall>>,
    tickets: BTreeMap<String, Box<dyn TicketSystem>>,
}

impl Integrations {
    /// The providers of `config`, all asked through one client.
    pub fn from_config(config: &IntegrationsConfig) -> Result<Self, String> {
        Self::with_client(config, ProviderClient::new()?)
    }

    /// The providers of `config` asked through `client`.
    pub fn with_client(
        config: &IntegrationsConfig,
        client: ProviderClient,
    ) -> Result<Self, String> {
        let mut on_call: BTreeMap<String, Box<dyn OnCall>> = BTreeMap::new();
        for p in &config.on_call {
            let provider: Box<dyn OnCall> = match p.kind {
                OnCallKind::PagerDuty => {
                    Box::new(pagerduty::PagerDuty::new(p.clone(), client.clone()))
                }
                OnCallKind::Opsgenie => {
                    Box::new(opsgenie::Opsgenie::new(p.clone(), client.clone()))
                }
            };
            on_call.insert(p.name.clone(), provider);
        }
        let mut tickets: BTreeMap<String, Box<dyn TicketSystem>> = BTreeMap::new();
        for t in &config.ticket_systems {
            let system: Box<dyn TicketSystem> = match t.kind {
                TicketKind::Jira => Box::new(jira::Jira::new(t.clone(), client.clone())),
                TicketKind::ServiceNow => {
                    Box::new(servicenow::ServiceNow::new(t.clone(), client.clone()))
                }
            };
            tickets.insert(t.name.clone(), system);
        }
        Ok(Self {
            config: config.clone(),
            on_call,
            tickets,
        })
    }

    /// The configuration the providers came from.
    pub fn config(&self) -> &IntegrationsConfig {
        &self.config
    }

    /// The on-call provider named `name`.
    pub fn on_call_provider(&self, name: &str) -> Option<&dyn OnCall> {
        self.on_call.get(name).map(Box::as_ref)
    }

    /// The ticket system named `name`.
    pub fn ticket_system(&self, name: &str) -> Option<&dyn TicketSystem> {
        self.tickets.get(name).map(Box::as_ref)
    }

    /// Whether the role `input` names has any rule here (no provider is
    /// asked, and no email looked up, for other roles).
    pub fn applies_to(&self, input: &RequestInput) -> bool {
        tpa_core::RoleName::parse(&input.role).is_ok_and(|r| {
            self.config.role_on_call.contains_key(&r) || self.config.role_tickets.contains_key(&r)
        })
    }
}

/// The wire form of the on-call and ticket checks recorded at submission.
pub fn check_views(rows: &[crate::store::integrations::CheckRow]) -> Vec<tpa_core::api::CheckView> {
    rows.iter()
        .map(|c| tpa_core::api::CheckView {
            kind: c.kind.clone(),
            provider: c.provider.clone(),
            outcome: c.outcome.clone(),
            summary: c.summary.clone(),
            answer_id: c.answer_id.clone(),
            at: tpa_core::audit::format_time(c.at),
        })
        .collect()
}
