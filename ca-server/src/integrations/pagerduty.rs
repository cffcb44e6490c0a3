//! PagerDuty REST API v2: the user with the requester's email (`GET /users`),
//! then their on-call entries in the schedule now (`GET /oncalls` filtered by
//! schedule and user); incidents by id (`GET /incidents/{id}`).

use serde::Deserialize;
use tpa_core::VerifiedEmail;

use super::client::{MAX_PAGES, ProviderClient, ProviderError, endpoint, secret_header};
use super::{BoxFuture, IncidentAnswer, OnCall, OnCallAnswer};
use crate::config::OnCallProviderConfig;

/// A PagerDuty account.
#[derive(Debug)]
pub struct PagerDuty {
    config: OnCallProviderConfig,
    client: ProviderClient,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(default)]
    more: bool,
    #[serde(flatten)]
    items: T,
}

#[derive(Debug, Deserialize)]
struct Users {
    users: Vec<UserObject>,
}

#[derive(Debug, Deserialize)]
struct UserObject {
    id: String,
    #[serde(default)]
    email: String,
}

#[derive(Debug, Deserialize)]
struct OnCalls {
    oncalls: Vec<OnCallEntry>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    id: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OnCallEntry {
    user: Reference,
    schedule: Option<Reference>,
    escalation_policy: Reference,
    escalation_level: u32,
    start: Option<String>,
    end: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IncidentBody {
    incident: Incident,
}

#[derive(Debug, Deserialize)]
struct Incident {
    id: String,
    status: String,
    service: Reference,
}

const PAGE: usize = 25;

impl PagerDuty {
    /// The provider of `config`, asked through `client`.
    pub fn new(config: OnCallProviderConfig, client: ProviderClient) -> Self {
        Self { config, client }
    }

    fn get(&self, segments: &[&str]) -> Result<reqwest::RequestBuilder, ProviderError> {
        let auth = secret_header(&format!("Token token={}", self.config.token.expose()))?;
        Ok(self
            .client
            .http()
            .get(endpoint(&self.config.url, segments))
            .header("accept", "application/vnd.pagerduty+json;version=2")
            .header("authorization", auth))
    }

    /// The ids of the users whose email is exactly `email`.
    async fn user_ids(&self, email: &VerifiedEmail) -> Result<Vec<String>, ProviderError> {
        let mut ids = Vec::new();
        for page in 0..MAX_PAGES {
            let offset = (page * PAGE).to_string();
            let limit = PAGE.to_string();
            let request = self.get(&["users"])?.query(&[
                ("query", email.as_str()),
                ("limit", &limit),
                ("offset", &offset),
            ]);
            let answer: Page<Users> = self.client.json(request).await?;
            // `query` matches names and emails loosely; only an exact
            // (case-insensitive) email counts.
            ids.extend(
                answer
                    .items
                    .users
                    .into_iter()
                    .filter(|u| email.matches(&u.email))
                    .map(|u| u.id),
            );
            if !answer.more {
                return Ok(ids);
            }
        }
        Err(ProviderError::TooManyPages)
    }
}

impl OnCall for PagerDuty {
    fn on_call<'a>(
        &'a self,
        schedule: &'a str,
        email: &'a VerifiedEmail,
    ) -> BoxFuture<'a, Result<OnCallAnswer, ProviderError>> {
        Box::pin(async move {
            let ids = self.user_ids(email).await?;
            if ids.is_empty() {
                return Ok(OnCallAnswer::NotOnCall {
                    detail: format!("no PagerDuty user has the email {email}"),
                });
            }
            for page in 0..MAX_PAGES {
                let offset = (page * PAGE).to_string();
                let limit = PAGE.to_string();
                let mut query: Vec<(&str, &str)> = vec![
                    ("schedule_ids[]", schedule),
                    ("limit", &limit),
                    ("offset", &offset),
                ];
                query.extend(ids.iter().map(|id| ("user_ids[]", id.as_str())));
                let request = self.get(&["oncalls"])?.query(&query);
                let answer: Page<OnCalls> = self.client.json(request).await?;
                // The filter is the provider's; TPA checks it again.
                let found = answer.items.oncalls.into_iter().find(|o| {
                    ids.contains(&o.user.id)
                        && o.schedule.as_ref().is_some_and(|s| s.id == schedule)
                });
                if let Some(o) = found {
                    return Ok(OnCallAnswer::OnCall {
                        evidence: format!(
                            "pagerduty oncall user={} schedule={schedule} escalation_policy={} level={} start={} end={}",
                            o.user.id,
                            o.escalation_policy.id,
                            o.escalation_level,
                            o.start.as_deref().unwrap_or("-"),
                            o.end.as_deref().unwrap_or("-"),
                        ),
                    });
                }
                if !answer.more {
                    return Ok(OnCallAnswer::NotOnCall {
                        detail: format!("not on call now in PagerDuty schedule {schedule}"),
                    });
                }
            }
            Err(ProviderError::TooManyPages)
        })
    }

    fn open_incident<'a>(
        &'a self,
        service: &'a str,
        incident: &'a str,
    ) -> BoxFuture<'a, Result<IncidentAnswer, ProviderError>> {
        Box::pin(async move {
            let request = self.get(&["incidents", incident])?;
            let answer = match self.client.json::<IncidentBody>(request).await {
                Err(ProviderError::NotFound) => {
                    return Ok(IncidentAnswer::NotOpen {
                        why: format!("PagerDuty has no incident {incident}"),
                    });
                }
                other => other?,
            };
            let i = answer.incident;
            Ok(if i.service.id != service {
                IncidentAnswer::NotOpen {
                    why: format!("incident {} is not of service {service}", i.id),
                }
            } else if i.status == "resolved" {
                IncidentAnswer::NotOpen {
                    why: format!("incident {} is resolved", i.id),
                }
            } else {
                IncidentAnswer::Open { id: i.id }
            })
        })
    }

    fn probe<'a>(&'a self, schedule: &'a str) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let request = self.get(&["oncalls"])?.query(&[
                ("schedule_ids[]", schedule),
                ("include[]", "users"),
                ("limit", "25"),
            ]);
            let answer: Page<OnCalls> = self.client.json(request).await?;
            let who: Vec<String> = answer
                .items
                .oncalls
                .iter()
                .filter(|o| o.schedule.as_ref().is_some_and(|s| s.id == schedule))
                .map(|o| match &o.user.email {
                    Some(email) => format!("{} ({email})", o.user.id),
                    None => o.user.id.clone(),
                })
                .collect();
            Ok(format!(
                "schedule {schedule}: {} on call now{}{}",
                who.len(),
                if who.is_empty() { "" } else { ": " },
                who.join(", ")
            ))
        })
    }
}
