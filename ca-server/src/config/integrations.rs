//! `[[on_call]]` and `[[ticket_systems]]`: which providers the CA may ask,
//! where, with which secret file; and the types of the roles' rules that use
//! them (parsed in `integration_rules`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use tpa_core::RoleName;

/// Which on-call provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCallKind {
    /// PagerDuty REST API v2 (`/users`, `/oncalls`, `/incidents/{id}`).
    PagerDuty,
    /// Opsgenie (`/v2/schedules/{id}/on-calls`, `/v1/incidents/{id}`).
    Opsgenie,
}

/// Which ticket system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketKind {
    /// Jira REST API v2 (`/rest/api/2/issue/{key}`).
    Jira,
    /// ServiceNow Table API (`/api/now/table/{table}`).
    ServiceNow,
}

/// A secret read from a private file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text (for an `Authorization` header only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One `[[on_call]]` provider.
#[derive(Debug, Clone)]
pub struct OnCallProviderConfig {
    /// Unique name, used by the roles' `on_call.provider`.
    pub name: String,
    /// Which API.
    pub kind: OnCallKind,
    /// The API's base URL, e.g. `https://api.pagerduty.com`.
    pub url: reqwest::Url,
    /// The API token (PagerDuty) or API key (Opsgenie).
    pub token: Secret,
}

/// One `[[ticket_systems]]` entry.
#[derive(Debug, Clone)]
pub struct TicketSystemConfig {
    /// Unique name, used by the roles' `ticket_check.system`.
    pub name: String,
    /// Which API.
    pub kind: TicketKind,
    /// The instance's base URL, e.g. `https://example.atlassian.net`.
    pub url: reqwest::Url,
    /// With a username: HTTP Basic (username, token); without: Bearer token.
    pub username: Option<String>,
    /// The API token or password.
    pub token: Secret,
}

/// A role's `on_call` rule, as the CA applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleOnCall {
    /// The `[[on_call]]` provider's name.
    pub provider: String,
    /// The schedule id at that provider.
    pub schedule: String,
    /// When set, only requests whose ticket names an open incident of this
    /// service are approved on call.
    pub incident_service: Option<String>,
}

/// What a ticket system that does not answer means for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenDown {
    /// The request is refused with a clear message (the default).
    Refuse,
    /// The request goes on, flagged on its page and in the audit trail.
    AllowAndFlag,
}

/// Who the requester must be on the ticket (Jira).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequesterOnTicket {
    /// Anyone may name the ticket.
    Anyone,
    /// The requester is the ticket's assignee or its reporter.
    AssigneeOrReporter,
}

/// A role's `ticket_check` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleTicketCheck {
    /// The `[[ticket_systems]]` entry's name.
    pub system: String,
    /// Jira: allowed project keys (any when empty).
    pub projects: BTreeSet<String>,
    /// Jira: allowed `statusCategory.key` values (default `new`, `indeterminate`).
    pub status_categories: BTreeSet<String>,
    /// Jira: whether the requester must be the assignee or reporter.
    pub requester: RequesterOnTicket,
    /// ServiceNow: the tables a number may come from (`incident`, `change_request`).
    pub tables: Vec<String>,
    /// ServiceNow: allowed `state` values (default: not resolved, closed or cancelled).
    pub states: BTreeSet<String>,
    /// Comment on the ticket when access is approved and when it ends.
    pub comment: bool,
    /// What an unreachable system means.
    pub when_down: WhenDown,
}

/// Everything of issue 17's integrations the CA was configured with.
#[derive(Debug, Clone, Default)]
pub struct IntegrationsConfig {
    /// `[[on_call]]`.
    pub on_call: Vec<OnCallProviderConfig>,
    /// `[[ticket_systems]]`.
    pub ticket_systems: Vec<TicketSystemConfig>,
    /// The roles' `on_call` rules.
    pub role_on_call: BTreeMap<RoleName, RoleOnCall>,
    /// The roles' `ticket_check` rules.
    pub role_tickets: BTreeMap<RoleName, RoleTicketCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    name: String,
    provider: String,
    url: String,
    token_file: std::path::PathBuf,
    username: Option<String>,
}

fn base_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("url: {e}"))?;
    let loopback = url
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err("url must be https:// (plain http only to 127.0.0.1 or localhost)".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("url must not carry a query, a fragment or credentials".to_owned());
    }
    Ok(url)
}

fn secret(path: &Path, base: &Path) -> Result<Secret, String> {
    let path = if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    };
    super::oidc::read_private_file(&path)
        .map(Secret)
        .map_err(|e| format!("token_file {}: {e}", path.display()))
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(super) fn on_call_providers(
    raw: &[RawProvider],
    base: &Path,
) -> Result<Vec<OnCallProviderConfig>, String> {
    let mut seen = BTreeSet::new();
    raw.iter()
        .map(|p| {
            let ctx = |e: String| format!("on_call {:?}: {e}", p.name);
            if !name_ok(&p.name) || !seen.insert(p.name.clone()) {
                return Err(ctx(
                    "name must be unique, 1 to 64 letters, digits, '-', '_' or '.'".to_owned(),
                ));
            }
            let kind = match p.provider.as_str() {
                "pagerduty" => OnCallKind::PagerDuty,
                "opsgenie" => OnCallKind::Opsgenie,
                other => {
                    return Err(ctx(format!(
                        "provider {other:?} is not \"pagerduty\" or \"opsgenie\""
                    )));
                }
            };
            if p.username.is_some() {
                return Err(ctx("username is for [[ticket_systems]] only".to_owned()));
            }
            Ok(OnCallProviderConfig {
                name: p.name.clone(),
                kind,
                url: base_url(&p.url).map_err(ctx)?,
                token: secret(&p.token_file, base).map_err(ctx)?,
            })
        })
        .collect()
}

pub(super) fn ticket_systems(
    raw: &[RawProvider],
    base: &Path,
) -> Result<Vec<TicketSystemConfig>, String> {
    let mut seen = BTreeSet::new();
    raw.iter()
        .map(|p| {
            let ctx = |e: String| format!("ticket_systems {:?}: {e}", p.name);
            if !name_ok(&p.name) || !seen.insert(p.name.clone()) {
                return Err(ctx(
                    "name must be unique, 1 to 64 letters, digits, '-', '_' or '.'".to_owned(),
                ));
            }
            let kind = match p.provider.as_str() {
                "jira" => TicketKind::Jira,
                "servicenow" => TicketKind::ServiceNow,
                other => {
                    return Err(ctx(format!(
                        "provider {other:?} is not \"jira\" or \"servicenow\""
                    )));
                }
            };
            if p.username
                .as_deref()
                .is_some_and(|u| u.is_empty() || u.contains(':'))
            {
                return Err(ctx("username must not be empty or hold ':'".to_owned()));
            }
            Ok(TicketSystemConfig {
                name: p.name.clone(),
                kind,
                url: base_url(&p.url).map_err(ctx)?,
                username: p.username.clone(),
                token: secret(&p.token_file, base).map_err(ctx)?,
            })
        })
        .collect()
}
