//! Jira REST API v2: the issue (`GET /rest/api/2/issue/{key}`) must exist,
//! be in an allowed project and status category, and optionally be assigned
//! to or reported by the requester; comments go to
//! `POST /rest/api/2/issue/{key}/comment`.

use serde::Deserialize;
use serde_json::json;
use tpa_core::VerifiedEmail;

use super::client::{ProviderClient, ProviderError, endpoint, ticket_auth};
use super::{BoxFuture, TicketAnswer, TicketSystem};
use crate::config::{RequesterOnTicket, RoleTicketCheck, TicketSystemConfig};

/// A Jira site.
#[derive(Debug)]
pub struct Jira {
    config: TicketSystemConfig,
    client: ProviderClient,
}

#[derive(Debug, Deserialize)]
struct Issue {
    id: String,
    key: String,
    fields: Fields,
}

#[derive(Debug, Deserialize)]
struct Fields {
    status: Status,
    project: Project,
    assignee: Option<Person>,
    reporter: Option<Person>,
}

#[derive(Debug, Deserialize)]
struct Status {
    name: String,
    #[serde(rename = "statusCategory")]
    category: Category,
}

#[derive(Debug, Deserialize)]
struct Category {
    key: String,
}

#[derive(Debug, Deserialize)]
struct Project {
    key: String,
}

#[derive(Debug, Deserialize)]
struct Person {
    #[serde(rename = "emailAddress", default)]
    email: Option<String>,
}

/// Whether `key` is a Jira issue key (`PROJ-123`): an uppercase project key,
/// a dash, a number. Nothing else is ever put into a Jira URL.
pub fn is_issue_key(key: &str) -> bool {
    let Some((project, number)) = key.split_once('-') else {
        return false;
    };
    let mut p = project.bytes();
    p.next().is_some_and(|b| b.is_ascii_uppercase())
        && p.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && project.len() <= 64
        && !number.is_empty()
        && number.len() <= 18
        && !number.starts_with('0')
        && number.bytes().all(|b| b.is_ascii_digit())
}

impl Jira {
    /// The system of `config`, asked through `client`.
    pub fn new(config: TicketSystemConfig, client: ProviderClient) -> Self {
        Self { config, client }
    }

    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        ticket_auth(request, &self.config)
    }
}

impl TicketSystem for Jira {
    fn check<'a>(
        &'a self,
        key: &'a str,
        rule: &'a RoleTicketCheck,
        email: Option<&'a VerifiedEmail>,
    ) -> BoxFuture<'a, Result<TicketAnswer, ProviderError>> {
        Box::pin(async move {
            if !is_issue_key(key) {
                return Ok(TicketAnswer::Refused {
                    why: format!("{key:?} is not a Jira issue key such as INC-123"),
                });
            }
            let url = endpoint(&self.config.url, &["rest", "api", "2", "issue", key]);
            let request = self.authorize(
                self.client
                    .http()
                    .get(url)
                    .query(&[("fields", "status,project,assignee,reporter")]),
            )?;
            let issue: Issue = match self.client.json(request).await {
                Err(ProviderError::NotFound) => {
                    return Ok(TicketAnswer::Refused {
                        why: format!("Jira has no issue {key} (or TPA may not see it)"),
                    });
                }
                other => other?,
            };
            let f = &issue.fields;
            if !rule.projects.is_empty() && !rule.projects.contains(&f.project.key) {
                return Ok(TicketAnswer::Refused {
                    why: format!(
                        "Jira issue {} is in project {}, not one of {}",
                        issue.key,
                        f.project.key,
                        rule.projects.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            if !rule.status_categories.contains(&f.status.category.key) {
                return Ok(TicketAnswer::Refused {
                    why: format!(
                        "Jira issue {} is {:?} (status category {}); it must be open",
                        issue.key, f.status.name, f.status.category.key
                    ),
                });
            }
            if rule.requester == RequesterOnTicket::AssigneeOrReporter {
                let is_requester = |p: &Option<Person>| {
                    email.is_some_and(|e| {
                        p.as_ref()
                            .and_then(|p| p.email.as_deref())
                            .is_some_and(|pe| e.matches(pe))
                    })
                };
                if !is_requester(&f.assignee) && !is_requester(&f.reporter) {
                    let why = match email {
                        None => format!(
                            "Jira issue {} must be assigned to or reported by you, and your login has no verified email to compare",
                            issue.key
                        ),
                        Some(_) => format!(
                            "Jira issue {} is neither assigned to nor reported by you",
                            issue.key
                        ),
                    };
                    return Ok(TicketAnswer::Refused { why });
                }
            }
            Ok(TicketAnswer::Open {
                id: format!("jira issue id={} key={}", issue.id, issue.key),
                detail: format!(
                    "Jira issue {} is {:?} in project {}",
                    issue.key, f.status.name, f.project.key
                ),
            })
        })
    }

    fn comment<'a>(
        &'a self,
        key: &'a str,
        _rule: &'a RoleTicketCheck,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            if !is_issue_key(key) {
                return Err(ProviderError::NotFound);
            }
            let url = endpoint(
                &self.config.url,
                &["rest", "api", "2", "issue", key, "comment"],
            );
            let request =
                self.authorize(self.client.http().post(url).json(&json!({ "body": text })))?;
            self.client.send(request).await.map(drop)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, ProviderError>> {
        Box::pin(async move {
            let url = endpoint(&self.config.url, &["rest", "api", "2", "myself"]);
            let request = self.authorize(self.client.http().get(url))?;
            let me: Myself = self.client.json(request).await?;
            Ok(format!(
                "authenticated as {}",
                me.display_name
                    .or(me.email)
                    .unwrap_or_else(|| "an account without a name".to_owned())
            ))
        })
    }
}

#[derive(Debug, Deserialize)]
struct Myself {
    #[serde(rename = "displayName")]
    display_name: Option<String>,
    #[serde(rename = "emailAddress")]
    email: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn issue_keys() {
        // issue 17: only a plain issue key is ever put into a Jira URL.
        for ok in ["INC-1", "OPS_2-4411", "A-99"] {
            assert!(super::is_issue_key(ok), "{ok}");
        }
        for bad in [
            "",
            "INC",
            "INC-",
            "inc-1",
            "INC-01",
            "-1",
            "INC-1/../x",
            "../INC-1",
            "INC-1?x=1",
            "INC-1#a",
            "INC 1",
            "INC-1 ",
            "INC-1-2",
            "ÎNC-1",
        ] {
            assert!(!super::is_issue_key(bad), "{bad:?}");
        }
    }
}
