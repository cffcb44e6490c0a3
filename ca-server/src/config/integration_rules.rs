//! The roles' `on_call` and `ticket_check` rules: parsed against the
//! configured providers, split into what `tpa-core` decides with (the
//! on-call rule's source and maximum) and what the CA asks the providers.

use std::collections::BTreeSet;

use serde::Deserialize;
use tpa_core::{HumanDuration, OnCallRule};

use super::integrations::{
    OnCallKind, OnCallProviderConfig, RequesterOnTicket, RoleOnCall, RoleTicketCheck, TicketKind,
    TicketSystemConfig, WhenDown,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoleOnCall {
    provider: String,
    schedule: String,
    max_duration: String,
    incident_service: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTicketCheck {
    system: String,
    #[serde(default)]
    projects: Vec<String>,
    status_categories: Option<Vec<String>>,
    requester: Option<String>,
    tables: Option<Vec<String>>,
    states: Option<Vec<String>>,
    #[serde(default)]
    comment: bool,
    when_down: Option<String>,
}

/// An identifier as providers write them (schedule, service, project ids):
/// 1 to 64 ASCII letters, digits, `-`, `_`, `.`; nothing that could change
/// a URL's path or query.
fn provider_id(what: &str, text: &str) -> Result<String, String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    if text.is_empty() || text.len() > 64 || !text.bytes().all(ok) || text.starts_with('.') {
        return Err(format!(
            "{what} {text:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(text.to_owned())
}

/// A role's on-call rule: the tpa-core part (source, maximum) and the CA's.
pub(super) fn role_on_call(
    role: &str,
    raw: &RawRoleOnCall,
    providers: &[OnCallProviderConfig],
) -> Result<(OnCallRule, RoleOnCall), String> {
    let ctx = |e: String| format!("role {role}: on_call: {e}");
    let provider = providers
        .iter()
        .find(|p| p.name == raw.provider)
        .ok_or_else(|| {
            ctx(format!(
                "provider {:?} is not defined in [[on_call]]",
                raw.provider
            ))
        })?;
    let schedule = provider_id("schedule", &raw.schedule).map_err(ctx)?;
    let incident_service = raw
        .incident_service
        .as_deref()
        .map(|s| provider_id("incident_service", s))
        .transpose()
        .map_err(ctx)?;
    let max_duration =
        HumanDuration::parse(&raw.max_duration).map_err(|e| ctx(format!("max_duration: {e}")))?;
    let kind = match provider.kind {
        OnCallKind::PagerDuty => "pagerduty",
        OnCallKind::Opsgenie => "opsgenie",
    };
    let mut source = format!("{kind}:{}:{schedule}", provider.name);
    if let Some(service) = &incident_service {
        // A rule that needs an incident is another rule than one that does not.
        source.push_str(&format!(":incident={service}"));
    }
    Ok((
        OnCallRule {
            source,
            max_duration,
        },
        RoleOnCall {
            provider: provider.name.clone(),
            schedule,
            incident_service,
        },
    ))
}

/// ServiceNow states that mean "not open": resolved (6), closed (7), cancelled (8)
/// for incidents; closed (3) and cancelled (4) for change requests. The
/// default allows the open ones of both tables.
const SERVICENOW_OPEN_STATES: [&str; 7] = ["-5", "-4", "-3", "-2", "-1", "1", "2"];

pub(super) fn role_ticket_check(
    role: &str,
    raw: &RawTicketCheck,
    systems: &[TicketSystemConfig],
    has_pattern: bool,
) -> Result<RoleTicketCheck, String> {
    let ctx = |e: String| format!("role {role}: ticket_check: {e}");
    let system = systems
        .iter()
        .find(|s| s.name == raw.system)
        .ok_or_else(|| {
            ctx(format!(
                "system {:?} is not defined in [[ticket_systems]]",
                raw.system
            ))
        })?;
    if !has_pattern {
        return Err(ctx(
            "needs the role's ticket_pattern, so that every request names a ticket".to_owned(),
        ));
    }
    let ids = |what: &str, list: &[String]| {
        list.iter()
            .map(|p| provider_id(what, p))
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(ctx)
    };
    let when_down = match raw.when_down.as_deref().unwrap_or("refuse") {
        "refuse" => WhenDown::Refuse,
        "allow_and_flag" => WhenDown::AllowAndFlag,
        other => {
            return Err(ctx(format!(
                "when_down {other:?} is not \"refuse\" or \"allow_and_flag\""
            )));
        }
    };
    let requester = match raw.requester.as_deref().unwrap_or("anyone") {
        "anyone" => RequesterOnTicket::Anyone,
        "assignee_or_reporter" => RequesterOnTicket::AssigneeOrReporter,
        other => {
            return Err(ctx(format!(
                "requester {other:?} is not \"anyone\" or \"assignee_or_reporter\""
            )));
        }
    };
    let jira_only = !raw.projects.is_empty()
        || raw.status_categories.is_some()
        || requester != RequesterOnTicket::Anyone;
    let snow_only = raw.tables.is_some() || raw.states.is_some();
    match system.kind {
        TicketKind::Jira if snow_only => {
            return Err(ctx("tables and states are for ServiceNow".to_owned()));
        }
        TicketKind::ServiceNow if jira_only => {
            return Err(ctx(
                "projects, status_categories and requester are for Jira".to_owned(),
            ));
        }
        _ => {}
    }
    let status_categories = match &raw.status_categories {
        Some(list) => ids("status category", list)?,
        None => ["new", "indeterminate"].map(str::to_owned).into(),
    };
    let tables = raw
        .tables
        .clone()
        .unwrap_or_else(|| vec!["incident".to_owned(), "change_request".to_owned()]);
    if tables.is_empty()
        || tables
            .iter()
            .any(|t| t != "incident" && t != "change_request")
    {
        return Err(ctx(
            "tables must name \"incident\" and/or \"change_request\"".to_owned(),
        ));
    }
    let states = match &raw.states {
        Some(list) => ids("state", list)?,
        None => SERVICENOW_OPEN_STATES.map(str::to_owned).into(),
    };
    Ok(RoleTicketCheck {
        system: system.name.clone(),
        projects: ids("project", &raw.projects)?,
        status_categories,
        requester,
        tables,
        states,
        comment: raw.comment,
        when_down,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use crate::config::Config;

    const TOKEN: &str = "token-in-a-private-file-42";

    /// Parses a configuration in a directory holding `tok` (mode 0600) and
    /// `open.tok` (mode 0644), with the example roles and `extra`.
    fn parse(roles_extra: &str, extra: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, TOKEN).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("tok", 0o600);
        write("open.tok", 0o644);
        let roles = crate::config::EXAMPLE_ROLES.replace(
            "break_glass = { max_duration = \"30m\" }",
            &format!("break_glass = {{ max_duration = \"30m\" }}\n{roles_extra}"),
        );
        let text = format!("[ca]\nkey_file = \"k\"\n[database]\npath = \"d\"\n{roles}\n{extra}\n");
        Config::parse(&text, &dir.path().join("tpa.toml")).map_err(|e| e.to_string())
    }

    const PD: &str = "[[on_call]]\nname = \"pd\"\nprovider = \"pagerduty\"\nurl = \"https://api.pagerduty.com\"\ntoken_file = \"tok\"\n";
    const JIRA: &str = "[[ticket_systems]]\nname = \"jira\"\nprovider = \"jira\"\nurl = \"https://x.atlassian.net\"\ntoken_file = \"tok\"\n";
    const RULE: &str =
        "on_call = { provider = \"pd\", schedule = \"PSCHED1\", max_duration = \"1h\" }";

    fn check_error(roles_extra: &str, extra: &str, expected: &str) {
        let e = parse(roles_extra, extra).unwrap_err();
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
        assert!(!e.contains(TOKEN), "the token is never in an error: {e}");
    }

    #[test]
    fn a_complete_configuration_parses_and_hides_its_tokens() {
        let c = parse(
            &format!("{RULE}\nticket_check = {{ system = \"jira\", projects = [\"INC\"], comment = true }}"),
            &format!("{PD}\n{JIRA}"),
        )
        .unwrap();
        let role = tpa_core::RoleName::parse("hotfix-admin").unwrap();
        let rule = c.policy.role(&role).unwrap().on_call.clone().unwrap();
        assert_eq!(rule.source, "pagerduty:pd:PSCHED1");
        assert_eq!(c.integrations.role_on_call[&role].schedule, "PSCHED1");
        let check = &c.integrations.role_tickets[&role];
        assert!(check.comment && check.status_categories.contains("indeterminate"));
        assert_eq!(c.integrations.on_call[0].token.expose(), TOKEN);
        assert!(!format!("{c:?}").contains(TOKEN), "Debug hides the token");
    }

    #[test]
    fn integration_errors_name_the_key() {
        // issue 17: every bad setting is refused at start-up, by name.
        check_error(
            "",
            &PD.replace("pagerduty", "victorops"),
            "provider \"victorops\"",
        );
        check_error(
            "",
            &PD.replace("https://api.pagerduty.com", "http://pd.example"),
            "https://",
        );
        check_error(
            "",
            &PD.replace("https://api.pagerduty.com", "https://pd.example/?a=1"),
            "query",
        );
        check_error("", &PD.replace("\"tok\"", "\"missing.tok\""), "token_file");
        check_error("", &PD.replace("\"tok\"", "\"open.tok\""), "chmod 600");
        check_error("", &format!("{PD}{PD}"), "unique");
        check_error(RULE, "", "provider \"pd\" is not defined in [[on_call]]");
        check_error(&RULE.replace("PSCHED1", "../x"), PD, "schedule");
        check_error(&RULE.replace("1h", "5h"), PD, "on_call.max_duration");
        check_error(
            "ticket_check = { system = \"jira\" }",
            "",
            "not defined in [[ticket_systems]]",
        );
        check_error(
            "ticket_check = { system = \"jira\", tables = [\"incident\"] }",
            JIRA,
            "for ServiceNow",
        );
        check_error(
            "ticket_check = { system = \"jira\", when_down = \"maybe\" }",
            JIRA,
            "when_down",
        );
        check_error(
            "ticket_check = { system = \"jira\", requester = \"boss\" }",
            JIRA,
            "requester",
        );
        check_error(
            "ticket_check = { system = \"jira\", colour = 1 }",
            JIRA,
            "colour",
        );
        let hash = crate::auth::identity::hash_password("a password").unwrap();
        check_error(
            "",
            &format!(
                "[[accounts]]\nusername = \"a\"\npassword_hash = \"{hash}\"\nemail = \"not an email\"\n"
            ),
            "account \"a\": email",
        );
    }

    #[test]
    fn rules_that_need_something_else() {
        // A ticket check without ticket_pattern could be skipped by naming no ticket.
        let e = parse("", &format!("{JIRA}\n[[roles]]\nname = \"r\"\nlogins = [\"x\"]\nhosts = [\"web-1\"]\nmax_duration = \"1h\"\nrequestable_by = [\"e\"]\nstages = [{{ group = \"l\" }}]\nticket_check = {{ system = \"jira\" }}\n")).unwrap_err();
        assert!(e.contains("needs the role's ticket_pattern"), "{e}");
        // An on-call rule needs stages to fall back to.
        let e = parse("", &format!("{PD}\n[[roles]]\nname = \"r\"\nlogins = [\"x\"]\nhosts = [\"web-1\"]\nmax_duration = \"1h\"\nrequestable_by = [\"e\"]\nauto_approve = {{ group = \"e\", max_duration = \"1h\" }}\n{RULE}\n")).unwrap_err();
        assert!(e.contains("on_call needs approval stages"), "{e}");
    }
}
