//! The earlier approvers of a request as they are now: the groups each one
//! is a member of at decision and issuance time, for `AccessRequest::revalidate`.
//!
//! Groups are re-read the way a decision reads them: local accounts from the
//! configuration; OpenID Connect users from their most recent login (the
//! groups claim of that login; when none is stored, the group the approval
//! recorded), and nobody at an issuer that is no longer configured.

use std::collections::{BTreeMap, BTreeSet};

use tpa_core::{AccessRequest, GroupName, Identity, People, User, Username};

use super::error::WorkflowError;
use crate::auth::identity::Identities;
use crate::config::Config;
use crate::store::sql::Sql;
use crate::store::{StoreError, auth_tokens};

/// Current groups of every approver of `r`, by identity. An approver whose
/// account is gone is missing from the map (a member of nothing).
pub fn current(
    conn: &impl Sql,
    identities: &Identities,
    r: &AccessRequest,
) -> Result<BTreeMap<Identity, BTreeSet<GroupName>>, WorkflowError> {
    let mut out = BTreeMap::new();
    for a in &r.approvals {
        if out.contains_key(&a.approver) {
            continue;
        }
        let probe = User {
            identity: a.approver.clone(),
            username: a.approver_username.clone(),
            display_name: String::new(),
            groups: BTreeSet::new(),
        };
        // Directory approvers are re-read live (issue 16); a directory that
        // cannot be asked stops the decision instead of voiding approvals.
        let fresh =
            identities
                .refresh_live_blocking(&probe)
                .map_err(|down| WorkflowError::Refused {
                    code: crate::refusal::Refusal::DirectoryUnavailable,
                    message: format!("{down}; nothing was decided or issued, try again later"),
                })?;
        let Some(fresh) = fresh else {
            continue;
        };
        let groups = if fresh.identity.issuer() == tpa_core::identity::LOCAL_ISSUER
            || fresh.identity.issuer() == crate::policy_hook::HOOK_ISSUER
            || identities.is_directory(fresh.identity.issuer())
        {
            fresh.groups
        } else {
            match auth_tokens::latest_groups(conn, a.approver.issuer(), a.approver.subject())? {
                Some(json) => serde_json::from_str::<Vec<String>>(&json)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|g| GroupName::parse(g).ok())
                    .collect(),
                // No stored login any more (rows go a day after they
                // expire): group membership cannot be confirmed, so the
                // approval does not count (when in doubt, deny).
                None => BTreeSet::new(),
            }
        };
        out.insert(a.approver.clone(), groups);
    }
    Ok(out)
}

/// The usernames known to be members of `group` now: local accounts from the
/// configuration, and OpenID Connect and directory users of a configured
/// issuer by the groups of their most recent login (people who never logged in are not
/// known). Used to show who could still approve.
pub fn members(
    conn: &impl Sql,
    config: &Config,
    group: &GroupName,
) -> Result<BTreeSet<Username>, StoreError> {
    let mut out: BTreeSet<Username> = config
        .accounts
        .iter()
        .filter(|a| a.groups.contains(group))
        .map(|a| a.username.clone())
        .collect();
    let trimmed = |s: &str| s.trim_end_matches('/').to_owned();
    for (issuer, username, groups) in
        auth_tokens::latest_logins(conn, tpa_core::identity::LOCAL_ISSUER)?
    {
        // Directory users (issue 16) by the groups of their last login too:
        // a hint for people, never a decision (decisions re-read live).
        let configured = config
            .oidc
            .iter()
            .any(|c| trimmed(&c.issuer) == trimmed(&issuer))
            || config
                .ldap
                .iter()
                .any(|c| format!("{}/{}", c.url, c.user_base) == issuer);
        let member = serde_json::from_str::<Vec<String>>(&groups)
            .unwrap_or_default()
            .iter()
            .any(|g| g == group.as_str());
        if configured
            && member
            && let Ok(name) = Username::parse(&username)
        {
            out.insert(name);
        }
    }
    Ok(out)
}

/// Of `members`, those who may still approve a request of `requester`
/// already approved by `approved`: never the requester's person, never a
/// person who approved already.
pub fn still_able(
    people: &People,
    members: BTreeSet<Username>,
    requester: &Username,
    approved: &[&Username],
) -> Vec<String> {
    members
        .into_iter()
        .filter(|m| {
            !people.same_person(m, requester) && !approved.iter().any(|a| people.same_person(m, a))
        })
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// One approval stage of a request as its page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageLine {
    /// From 1.
    pub number: usize,
    /// The group that approves at this stage.
    pub group: String,
    /// How many approvals it needs.
    pub needed: u32,
    /// Who approved it (as recorded), by username.
    pub approved_by: Vec<String>,
    /// Known members of the group who could still approve.
    pub can_approve: Vec<String>,
}

/// The stages of `r`'s role now, with who approved each and who could still.
pub fn stage_lines(
    conn: &impl Sql,
    config: &Config,
    r: &AccessRequest,
) -> Result<Vec<StageLine>, StoreError> {
    let Some(role) = config.policy.role(&r.role) else {
        return Ok(Vec::new());
    };
    let approved: Vec<&Username> = r.approvals.iter().map(|a| &a.approver_username).collect();
    let mut out = Vec::with_capacity(role.stages.len());
    for (i, stage) in role.stages.iter().enumerate() {
        let members = members(conn, config, &stage.group)?;
        out.push(StageLine {
            number: i + 1,
            group: stage.group.to_string(),
            needed: stage.approvals,
            approved_by: r
                .approvals
                .iter()
                .filter(|a| a.stage == i)
                .map(|a| a.approver_username.as_str().to_owned())
                .collect(),
            can_approve: still_able(
                config.policy.people(),
                members,
                &r.requester_username,
                &approved,
            ),
        });
    }
    Ok(out)
}
