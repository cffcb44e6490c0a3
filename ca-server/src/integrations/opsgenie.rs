//! Opsgenie: who is on call now in a schedule (`GET
//! /v2/schedules/{id}/on-calls?flat=true`, whose `onCallRecipients` are the
//! users' usernames, which are their emails); incidents by id (`GET
//! /v1/incidents/{id}`).

use serde::Deserialize;
use tpa_core::VerifiedEmail;

use super::client::{ProviderClient, ProviderError, endpoint, secret_header};
use super::{BoxFuture, IncidentAnswer, OnCall, OnCallAnswer};
use crate::config::OnCallProviderConfig;

/// An Opsgenie account.
#[derive(Debug)]
pub struct Opsgenie {
    config: OnCallProviderConfig,
    client: ProviderClient,
}

#[derive(Debug, Deserialize)]
struct OnCallsBody {
    data: OnCallsData,
    #[serde(rename = "requestId", default)]
    request_id: String,
}

#[derive(Debug, Deserialize)]
struct OnCallsData {
    #[serde(rename = "onCallRecipients", default)]
    recipients: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct IncidentBody {
    data: Incident,
}

#[derive(Debug, Deserialize)]
struct Incident {
    id: String,
    status: String,
    #[serde(rename = "impactedServices", default)]
    impacted_services: Vec<String>,
}

impl Opsgenie {
    /// The provider of `config`, asked through `client`.
    pub fn new(config: OnCallProviderConfig, client: ProviderClient) -> Self {
        Self { config, client }
    }

    fn get(&self, segments: &[&str]) -> Result<reqwest::RequestBuilder, ProviderError> {
        let auth = secret_header(&format!("GenieKey {}", self.config.token.expose()))?;
        Ok(self
            .client
            .http()
            .get(endpoint(&self.config.url, segments))
            .header("authorization", auth))
    }
}

impl OnCall for Opsgenie {
    fn on_call<'a>(
        &'a self,
        schedule: &'a str,
        email: &'a VerifiedEmail,
    ) -> BoxFuture<'a, Result<OnCallAnswer, ProviderError>> {
        Box::pin(async move {
            let request = self
                .get(&["v2", "schedules", schedule, "on-calls"])?
                .query(&[("scheduleIdentifierType", "id"), ("flat", "true")]);
            let answer: OnCallsBody = self.client.json(request).await?;
            Ok(if answer.data.recipients.iter().any(|r| email.matches(r)) {
                OnCallAnswer::OnCall {
                    evidence: format!(
                        "opsgenie on-calls schedule={schedule} requestId={}",
                        answer.request_id
                    ),
                }
            } else {
                OnCallAnswer::NotOnCall {
                    detail: format!("not on call now in Opsgenie schedule {schedule}"),
                }
            })
        })
    }

    fn open_incident<'a>(
        &'a self,
        service: &'a str,
        incident: &'a str,
    ) -> BoxFuture<'a, Result<IncidentAnswer, ProviderError>> {
        Box::pin(async move {
            let request = self
                .get(&["v1", "incidents", incident])?
                .query(&[("identifierType", "tiny")]);
            let answer = match self.client.json::<IncidentBody>(request).await {
                Err(ProviderError::NotFound) => {
                    return Ok(IncidentAnswer::NotOpen {
                        why: format!("Opsgenie has no incident {incident}"),
                    });
                }
                other => other?,
            };
            let i = answer.data;
            Ok(if !i.impacted_services.iter().any(|s| s == service) {
                IncidentAnswer::NotOpen {
                    why: format!("incident {incident} does not impact service {service}"),
                }
            } else if i.status != "open" {
                IncidentAnswer::NotOpen {
                    why: format!("incident {incident} is {}", i.status),
                }
            } else {
                IncidentAnswer::Open { id: i.id }
            })
        })
    }

    fn probe<'a>(&'a self, schedule: &'a str) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let request = self
                .get(&["v2", "schedules", schedule, "on-calls"])?
                .query(&[("scheduleIdentifierType", "id"), ("flat", "true")]);
            let answer: OnCallsBody = self.client.json(request).await?;
            let who = &answer.data.recipients;
            Ok(format!(
                "schedule {schedule}: {} on call now{}{}",
                who.len(),
                if who.is_empty() { "" } else { ": " },
                who.join(", ")
            ))
        })
    }
}
