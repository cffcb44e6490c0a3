//! Policy explain for the CA: `tpa_core::explain::explain` plus who could
//! approve (known current members of each stage's group). One function for
//! `tpa-ca policy explain`, `tpa-ca policy test` and
//! `GET /api/v1/policy/explain`.

use chrono::{DateTime, Utc};
use tpa_core::api::{ExplainStage, ExplainView};
use tpa_core::explain::{Verdict, explain as verdict};
use tpa_core::{ApprovalPath, PolicyRefusal, RoleName, User};

use super::approvers::{members, still_able};
use crate::config::Config;
use crate::store::StoreError;
use crate::store::sql::Sql;
use tpa_core::api::GrantView;

/// Explains a request of `user` for `role` on `host` for `duration`.
/// `conn` (when there is a database) names the SSO users known as members.
pub fn explain(
    conn: Option<&impl Sql>,
    config: &Config,
    user: &User,
    (role, host, duration): (&str, &str, Option<&str>),
    now: DateTime<Utc>,
) -> Result<ExplainView, StoreError> {
    let policy = &config.policy;
    let found = RoleName::parse(role).ok().and_then(|n| policy.role(&n));
    let mut view = ExplainView {
        user: user.username.to_string(),
        role: role.chars().take(64).collect(),
        host: host.chars().take(253).collect(),
        allowed: false,
        code: None,
        message: None,
        path: None,
        duration: duration.map(|d| d.chars().take(16).collect()),
        grant: None,
        stages: Vec::new(),
        auto_approve: found.and_then(|r| r.auto_approve.as_ref()).map(|a| {
            format!(
                "members of {} get up to {} at once",
                a.group, a.max_duration
            )
        }),
        break_glass: found.and_then(|r| r.break_glass.as_ref()).map(|b| {
            format!(
                "self-approval with an incident id, up to {}",
                b.max_duration
            )
        }),
        ticket_pattern: None,
    };
    match verdict(policy, user, role, host, duration, now) {
        Verdict::Denied(refusal) => {
            // A role the user may not request keeps its rules to itself.
            if matches!(refusal, PolicyRefusal::NotAllowed { .. }) {
                view.auto_approve = None;
                view.break_glass = None;
            }
            view.code = Some(refusal.code().to_owned());
            view.message = Some(refusal.to_string());
        }
        Verdict::Allowed {
            path,
            hosts,
            duration,
            grant,
            ticket_pattern,
        } => {
            view.allowed = true;
            view.host = hosts.iter().map(|h| h.as_str()).collect();
            view.duration = Some(duration.to_string());
            view.grant = Some(GrantView::of(&grant));
            view.ticket_pattern = ticket_pattern;
            view.path = Some(path.as_str().to_owned());
            if let (ApprovalPath::Stages, Some(role)) = (path, found) {
                for (i, stage) in role.stages.iter().enumerate() {
                    let known = match conn {
                        Some(conn) => members(conn, config, &stage.group)?,
                        None => config
                            .accounts
                            .iter()
                            .filter(|a| a.groups.contains(&stage.group))
                            .map(|a| a.username.clone())
                            .collect(),
                    };
                    view.stages.push(ExplainStage {
                        stage: i + 1,
                        group: stage.group.to_string(),
                        approvals: stage.approvals,
                        could_approve: still_able(policy.people(), known, &user.username, &[]),
                    });
                }
            }
        }
    }
    Ok(view)
}
