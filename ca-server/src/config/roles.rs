//! `[[roles]]`, `[host_groups]` and `[workflow]`: parsed into a validated [`Policy`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use tpa_core::{
    ApprovalStage, AutoApprove, BreakGlass, CriticalOptions, Extension, ForceCommand, GroupName,
    HostPattern, HumanDuration, Policy, Principal, Role, RoleName, SourceAddresses, TicketPattern,
};

/// Workflow settings.
#[derive(Debug, Clone)]
pub struct WorkflowConfig {
    /// How long a request may stay pending before it expires.
    pub pending_ttl: HumanDuration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkflow {
    pending_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    name: String,
    #[serde(default)]
    description: String,
    logins: Vec<String>,
    hosts: Vec<String>,
    max_duration: String,
    default_duration: Option<String>,
    cert_ttl: Option<String>,
    #[serde(default)]
    extensions: Vec<String>,
    force_command: Option<String>,
    source_address: Option<String>,
    requestable_by: Vec<String>,
    #[serde(default)]
    stages: Vec<RawStage>,
    auto_approve: Option<RawAutoApprove>,
    break_glass: Option<RawBreakGlass>,
    #[serde(default = "default_true")]
    require_reason: bool,
    ticket_pattern: Option<String>,
    #[serde(default)]
    host_scoped_principals: bool,
    on_call: Option<super::integration_rules::RawRoleOnCall>,
    ticket_check: Option<super::integration_rules::RawTicketCheck>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    group: String,
    #[serde(default = "default_one")]
    approvals: u32,
}

fn default_one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutoApprove {
    group: String,
    max_duration: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakGlass {
    max_duration: String,
}

pub(super) fn workflow(raw: &RawWorkflow) -> Result<WorkflowConfig, String> {
    let text = raw.pending_ttl.as_deref().unwrap_or("24h");
    let pending_ttl =
        HumanDuration::parse(text).map_err(|e| format!("workflow.pending_ttl: {e}"))?;
    Ok(WorkflowConfig { pending_ttl })
}

/// Builds the policy; every message names the role and the key. The roles'
/// `on_call` and `ticket_check` rules go into `integrations` (whose
/// providers are already parsed).
pub(super) fn policy(
    raw: &[RawRole],
    host_groups: &BTreeMap<String, Vec<String>>,
    integrations: &mut super::IntegrationsConfig,
) -> Result<Policy, String> {
    let mut seen = BTreeSet::new();
    let mut roles = Vec::with_capacity(raw.len());
    for r in raw {
        let mut role = role(r, host_groups)?;
        if let Some(on_call) = &r.on_call {
            let (rule, settings) =
                super::integration_rules::role_on_call(&r.name, on_call, &integrations.on_call)?;
            role.on_call = Some(rule);
            integrations
                .role_on_call
                .insert(role.name.clone(), settings);
        }
        if let Some(check) = &r.ticket_check {
            let settings = super::integration_rules::role_ticket_check(
                &r.name,
                check,
                &integrations.ticket_systems,
                role.ticket_pattern.is_some(),
            )?;
            integrations
                .role_tickets
                .insert(role.name.clone(), settings);
        }
        if !seen.insert(role.name.clone()) {
            return Err(format!("role {} is defined twice", role.name));
        }
        roles.push(role);
    }
    Policy::new(roles).map_err(|e| e.to_string())
}

/// `[[identity_links]]`: usernames that are one person across connectors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityLink {
    usernames: Vec<String>,
}

/// The policy with the person rule of `[[identity_links]]`.
pub fn with_links(policy: Policy, links: &[RawIdentityLink]) -> Result<Policy, String> {
    let groups = links
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.usernames
                .iter()
                .map(|u| {
                    tpa_core::Username::parse(u)
                        .map_err(|e| format!("identity_links[{i}].usernames: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let people = tpa_core::People::new(groups).map_err(|e| e.to_string())?;
    Ok(policy.with_people(people))
}

fn role(r: &RawRole, host_groups: &BTreeMap<String, Vec<String>>) -> Result<Role, String> {
    let name = RoleName::parse(&r.name).map_err(|e| format!("roles: {e}"))?;
    let at = At(&name);
    // Checked in the order of the keys in the docs: the first error is the one reported.
    let logins = r
        .logins
        .iter()
        .map(|l| Principal::parse(l).map_err(|e| at.key("logins", &e)))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let (hosts, scope) = hosts(r, host_groups, at)?;
    let max_duration = at.duration("max_duration", &r.max_duration)?;
    let default_duration = match &r.default_duration {
        Some(d) => at.duration("default_duration", d)?,
        None => max_duration.min(at.duration("default_duration", "1h")?),
    };
    let cert_ttl = at.duration("cert_ttl", r.cert_ttl.as_deref().unwrap_or("15m"))?;
    let extensions = r
        .extensions
        .iter()
        .map(|e| Extension::parse(e).map_err(|err| at.key("extensions", &err)))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let critical_options = critical_options(r, at)?;
    let Approvals {
        requestable_by,
        stages,
        auto_approve,
        break_glass,
    } = approvals(r, at)?;
    let ticket_pattern = r
        .ticket_pattern
        .as_deref()
        .map(TicketPattern::parse)
        .transpose()
        .map_err(|e| at.key("ticket_pattern", &e))?;
    Ok(Role {
        name,
        description: r.description.clone(),
        logins,
        hosts,
        max_duration,
        default_duration,
        cert_ttl,
        extensions,
        critical_options,
        requestable_by,
        stages,
        auto_approve,
        break_glass,
        on_call: None,
        require_reason: r.require_reason,
        ticket_pattern,
        host_scope: r.host_scoped_principals.then_some(scope),
    })
}

/// Where in the config a role's error is: `role NAME: KEY: why`.
#[derive(Clone, Copy)]
struct At<'a>(&'a RoleName);

impl At<'_> {
    fn key(self, key: &str, e: &dyn std::fmt::Display) -> String {
        format!("role {}: {key}: {e}", self.0)
    }

    fn duration(self, key: &str, text: &str) -> Result<HumanDuration, String> {
        HumanDuration::parse(text).map_err(|e| self.key(key, &e))
    }

    fn group(self, key: &str, text: &str) -> Result<GroupName, String> {
        GroupName::parse(text).map_err(|e| self.key(key, &e))
    }
}

/// The role's host patterns, with `@group` entries expanded from
/// `[host_groups]`, and the groups themselves (its host scope).
fn hosts(
    r: &RawRole,
    host_groups: &BTreeMap<String, Vec<String>>,
    at: At<'_>,
) -> Result<(Vec<HostPattern>, Vec<tpa_core::HostGroup>), String> {
    let mut hosts = Vec::new();
    let mut scope = Vec::new();
    for h in &r.hosts {
        match h.strip_prefix('@') {
            Some(group_name) => {
                let group = host_group(group_name, host_groups, at)?;
                hosts.extend(group.patterns.iter().cloned());
                scope.push(group);
            }
            None if r.host_scoped_principals => {
                let why =
                    format!("{h:?}: with host_scoped_principals every entry must be a @group");
                return Err(at.key("hosts", &why));
            }
            None => hosts.push(HostPattern::parse(h).map_err(|e| at.key("hosts", &e))?),
        }
    }
    Ok((hosts, scope))
}

fn host_group(
    group_name: &str,
    host_groups: &BTreeMap<String, Vec<String>>,
    at: At<'_>,
) -> Result<tpa_core::HostGroup, String> {
    let name = GroupName::parse(group_name).map_err(|e| at.key("hosts", &e))?;
    let members = host_groups.get(group_name).ok_or_else(|| {
        at.key(
            "hosts",
            &format!("unknown host group @{group_name} (define it in [host_groups])"),
        )
    })?;
    let patterns = members
        .iter()
        .map(|m| {
            HostPattern::parse(m).map_err(|e| at.key(&format!("host_groups.{group_name}"), &e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tpa_core::HostGroup { name, patterns })
}

fn critical_options(r: &RawRole, at: At<'_>) -> Result<CriticalOptions, String> {
    Ok(CriticalOptions {
        force_command: r
            .force_command
            .as_deref()
            .map(ForceCommand::parse)
            .transpose()
            .map_err(|e| at.key("force_command", &e))?,
        source_address: r
            .source_address
            .as_deref()
            .map(SourceAddresses::parse)
            .transpose()
            .map_err(|e| at.key("source_address", &e))?,
    })
}

/// Who may request the role and who approves it, by which path.
struct Approvals {
    requestable_by: BTreeSet<GroupName>,
    stages: Vec<ApprovalStage>,
    auto_approve: Option<AutoApprove>,
    break_glass: Option<BreakGlass>,
}

fn approvals(r: &RawRole, at: At<'_>) -> Result<Approvals, String> {
    let requestable_by = r
        .requestable_by
        .iter()
        .map(|g| at.group("requestable_by", g))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let stages = r
        .stages
        .iter()
        .map(|s| {
            Ok(ApprovalStage {
                group: at.group("stages.group", &s.group)?,
                approvals: s.approvals,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let auto_approve = r
        .auto_approve
        .as_ref()
        .map(|a| {
            Ok::<_, String>(AutoApprove {
                group: at.group("auto_approve.group", &a.group)?,
                max_duration: at.duration("auto_approve.max_duration", &a.max_duration)?,
            })
        })
        .transpose()?;
    let break_glass = r
        .break_glass
        .as_ref()
        .map(|b| {
            Ok::<_, String>(BreakGlass {
                max_duration: at.duration("break_glass.max_duration", &b.max_duration)?,
            })
        })
        .transpose()?;
    Ok(Approvals {
        requestable_by,
        stages,
        auto_approve,
        break_glass,
    })
}

/// The two roles of the product brief, as `tpa-ca init` and `demo` write them.
pub const EXAMPLE_ROLES: &str = r#"
# Roles: what a certificate may carry, where, for how long, and who approves.
# Every key is described in docs/configuration.md.

[workflow]
# How long a request may wait for decisions before it expires.
pending_ttl = "24h"

[host_groups]
web = ["web-*"]
db = ["db-*"]

[[roles]]
name = "read-only-debug"
description = "Inspect logs on web hosts; no changes (the certificate forces a log viewer)."
logins = ["debug"]
hosts = ["@web"]
max_duration = "4h"
default_duration = "1h"
cert_ttl = "15m"
extensions = []
force_command = "journalctl --no-pager -n 500"
requestable_by = ["engineers"]
require_reason = true
stages = [{ group = "sre-leads", approvals = 1 }]
# Engineers get up to one hour at once, without waiting for anyone.
auto_approve = { group = "engineers", max_duration = "1h" }

[[roles]]
name = "hotfix-admin"
description = "Elevated access to fix production: one SRE lead, then one manager."
logins = ["root"]
hosts = ["@web", "@db"]
max_duration = "4h"
default_duration = "1h"
cert_ttl = "15m"
extensions = ["permit-pty"]
requestable_by = ["engineers"]
require_reason = true
ticket_pattern = "INC-[0-9]+"
stages = [
  { group = "sre-leads", approvals = 1 },
  { group = "managers", approvals = 1 },
]
break_glass = { max_duration = "30m" }
"#;

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = "[ca]\nkey_file = \"ca_key\"\n[database]\npath = \"tpa.db\"\n";

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{extra}"), Path::new("/etc/tpa/tpa.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn example_roles_parse_as_the_brief_describes() {
        let c = parse(super::EXAMPLE_ROLES).unwrap();
        let names: Vec<&str> = c.policy.roles().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["hotfix-admin", "read-only-debug"]);
        let hotfix = c
            .policy
            .roles()
            .find(|r| r.name.as_str() == "hotfix-admin")
            .unwrap();
        assert_eq!(hotfix.stages.len(), 2);
        assert_eq!(hotfix.max_duration.as_secs(), 4 * 3600);
        assert_eq!(hotfix.hosts.len(), 2, "@web and @db expanded");
        let debug = c
            .policy
            .roles()
            .find(|r| r.name.as_str() == "read-only-debug")
            .unwrap();
        assert!(debug.critical_options.force_command.is_some());
        assert_eq!(
            debug.auto_approve.as_ref().unwrap().max_duration.as_secs(),
            3600
        );
        assert_eq!(c.workflow.pending_ttl.as_secs(), 24 * 3600);
    }

    fn role(extra_keys: &str) -> String {
        format!(
            "[[roles]]\nname = \"r\"\nlogins = [\"deploy\"]\nhosts = [\"web-*\"]\nmax_duration = \"1h\"\n\
             requestable_by = [\"eng\"]\nstages = [{{ group = \"leads\" }}]\n{extra_keys}"
        )
    }

    fn check_error(extra: &str, expected: &str) {
        let e = parse(extra).unwrap_err();
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
    }

    #[test]
    fn role_errors_name_the_role_and_key() {
        assert!(parse(&role("")).is_ok());
        check_error(&role("extensions = [\"all\"]"), "role r: extensions");
        check_error(&role("force_command = \"a\\nb\""), "role r: force_command");
        check_error(
            &role("source_address = \"10.0.0.0/99\""),
            "role r: source_address",
        );
        check_error(&role("ticket_pattern = \"(\""), "role r: ticket_pattern");
        check_error(&role("cert_ttl = \"0\""), "role r: cert_ttl");
        check_error(&role("default_duration = \"2h\""), "default_duration");
        check_error(&role("colour = \"red\""), "colour");
        check_error(&format!("{}{}", role(""), role("")), "defined twice");
        check_error(
            &role("").replace("web-*", "@nope"),
            "unknown host group @nope",
        );
        check_error(&role("").replace("web-*", "*"), "role r: hosts");
        check_error(&role("").replace("\"deploy\"", "\"a,b\""), "role r: logins");
        check_error(
            &role("").replace("stages = [{ group = \"leads\" }]", ""),
            "approval stage",
        );
        check_error(
            &role("").replace("\"eng\"", "\"Eng Team\""),
            "role r: requestable_by",
        );
        check_error(
            "[workflow]\npending_ttl = \"never\"\n",
            "workflow.pending_ttl",
        );
    }
}
