//! Policy explain: what a user would get for a role on a host, and why not
//! when not. One function for `tpa-ca policy explain`, `tpa-ssh explain`
//! and `GET /api/v1/policy/explain`; it runs the same checks as a request.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::duration::HumanDuration;
use crate::grant::Grant;
use crate::host::HostName;
use crate::identity::User;
use crate::role::{ApprovalPath, Policy, PolicyRefusal, RequestInput};

/// What a request would get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The user may request it.
    Allowed {
        /// How it would be approved.
        path: ApprovalPath,
        /// The hosts, canonical.
        hosts: BTreeSet<HostName>,
        /// The window length.
        duration: HumanDuration,
        /// Exactly what certificates would carry.
        grant: Grant,
        /// A ticket pattern the request must also match, if the role has one.
        ticket_pattern: Option<String>,
    },
    /// The user may not, and why (the first broken rule).
    Denied(PolicyRefusal),
}

/// Explains a request of `user` for `role` on `host` for `duration` (the
/// role's default when `None`). Reason and ticket are not judged: a reason is
/// assumed, and a role's ticket pattern is reported rather than refused.
pub fn explain(
    policy: &Policy,
    user: &User,
    role: &str,
    host: &str,
    duration: Option<&str>,
    now: DateTime<Utc>,
) -> Verdict {
    let input = RequestInput {
        role: role.to_owned(),
        hosts: vec![host.to_owned()],
        duration: duration.map(str::to_owned),
        reason: "policy explain".to_owned(),
        ..RequestInput::default()
    };
    let ticket_pattern = |name: &crate::identifiers::RoleName| {
        policy
            .role(name)
            .and_then(|r| r.ticket_pattern.as_ref())
            .map(|p| p.as_str().to_owned())
    };
    match policy.check_request(user, &input, now) {
        Ok(checked) => Verdict::Allowed {
            ticket_pattern: ticket_pattern(&checked.role),
            path: checked.path,
            hosts: checked.hosts,
            duration: checked.duration,
            grant: checked.grant,
        },
        // Every check before the ticket passed: ask again as if a matching
        // ticket were given, by trying the path without a pattern.
        Err(PolicyRefusal::TicketRequired { role, .. }) => match policy.role(&role) {
            Some(r) => {
                let mut relaxed = r.clone();
                relaxed.ticket_pattern = None;
                let mut alone = Policy::new([relaxed]).unwrap_or_default();
                alone = alone.with_people(policy.people().clone());
                match alone.check_request(user, &input, now) {
                    Ok(checked) => Verdict::Allowed {
                        ticket_pattern: ticket_pattern(&checked.role),
                        path: checked.path,
                        hosts: checked.hosts,
                        duration: checked.duration,
                        grant: checked.grant,
                    },
                    Err(e) => Verdict::Denied(e),
                }
            }
            None => Verdict::Denied(PolicyRefusal::NoHosts),
        },
        Err(e) => Verdict::Denied(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::{hotfix_admin, t0, user};

    #[test]
    fn explain_says_why_not_and_what_otherwise() {
        let mut role = hotfix_admin();
        role.ticket_pattern = Some(crate::role::TicketPattern::parse("INC-[0-9]+").unwrap());
        let policy = Policy::new([role]).unwrap();
        let alice = user("alice", &["engineers"]);
        match explain(&policy, &alice, "hotfix-admin", "WEB-1", Some("2h"), t0()) {
            Verdict::Allowed {
                path,
                hosts,
                grant,
                ticket_pattern,
                ..
            } => {
                assert_eq!(path, ApprovalPath::Stages);
                assert_eq!(hosts.iter().next().unwrap().as_str(), "web-1");
                assert_eq!(grant.principals.len(), 1);
                assert_eq!(ticket_pattern.as_deref(), Some("INC-[0-9]+"));
            }
            other => panic!("{other:?}"),
        }
        let eve = user("eve", &["interns"]);
        let code = |v: Verdict| match v {
            Verdict::Denied(e) => e.code(),
            Verdict::Allowed { .. } => "allowed",
        };
        assert_eq!(
            code(explain(&policy, &eve, "hotfix-admin", "web-1", None, t0())),
            "role_not_allowed"
        );
        assert_eq!(
            code(explain(
                &policy,
                &alice,
                "hotfix-admin",
                "web-1.evil",
                None,
                t0()
            )),
            "host_not_in_role"
        );
        assert_eq!(
            code(explain(
                &policy,
                &alice,
                "hotfix-admin",
                "web-1",
                Some("9h"),
                t0()
            )),
            "duration_too_long"
        );
    }
}
