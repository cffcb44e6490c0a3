//! Automated approval because the requester is on call: the rule a role
//! carries, the decision recorded against the exact request snapshot, and the
//! verified email the requester is matched by.
//!
//! The provider is asked by the CA (no I/O here); what it answered becomes an
//! approval through `AccessRequest::approve_on_call` (in `request`), an
//! [`AutomatedApproval`] holding the request's content hash, so an on-call
//! approval binds what the certificate will carry exactly as a person's does.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::duration::HumanDuration;
use crate::identifiers::shown;

/// A role's on-call rule: requests of someone on call in the named schedule
/// are approved at once, up to `max_duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallRule {
    /// Which provider and schedule decide, e.g. `pagerduty:pd:PSCHED1`. An
    /// automated approval records it and counts only while the role names
    /// the same source.
    pub source: String,
    /// The longest window approved this way.
    pub max_duration: HumanDuration,
}

/// An approval made by an on-call check, recorded against the request snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomatedApproval {
    /// The rule's source when it approved ([`OnCallRule::source`]).
    pub source: String,
    /// The provider's answer: which on-call entry or incident showed it.
    pub evidence: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The content hash of the request it approved.
    pub content_hash: String,
}

/// Why an on-call answer cannot approve a request (the request then goes
/// through its approval stages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnCallNotApplicable {
    /// The role has no on-call rule, or another source than the one asked.
    #[error("the role's on-call rule changed")]
    NoRule,
    /// Longer than the rule allows.
    #[error("the duration {requested} exceeds the on-call maximum {max}")]
    TooLong {
        /// What was asked.
        requested: HumanDuration,
        /// The rule's maximum.
        max: HumanDuration,
    },
    /// Only pending requests of the stages path can be approved this way.
    #[error("the request is not waiting for its approval stages")]
    NotPending,
    /// A scheduled start: being on call now says nothing about then.
    #[error("a request with a scheduled start is not approved by an on-call check")]
    Scheduled,
}

/// An email address the identity provider (or the operator) vouches for:
/// what an on-call provider's user is matched by. Lowercase ASCII, one `@`,
/// at most 254 bytes; anything else is not matched at all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerifiedEmail(String);

/// Why an email address is not usable for matching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("email {0} is not an address TPA matches (ASCII local@domain, at most 254 bytes)")]
pub struct EmailError(String);

impl VerifiedEmail {
    /// Parses an address that was verified elsewhere (never call it on an
    /// address whose owner nobody checked). Compared in lowercase.
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        let bad = || EmailError(shown(text));
        let lower = text.trim().to_ascii_lowercase();
        let (local, domain) = lower.split_once('@').ok_or_else(bad)?;
        let ok_local = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b);
        let ok_domain = |b: u8| b.is_ascii_alphanumeric() || b".-".contains(&b);
        if lower.len() > 254
            || local.is_empty()
            || local.len() > 64
            || !local.bytes().all(ok_local)
            || domain.is_empty()
            || !domain.contains('.')
            || !domain.bytes().all(ok_domain)
            || domain.starts_with(['.', '-'])
            || domain.ends_with(['.', '-'])
        {
            return Err(bad());
        }
        Ok(Self(lower))
    }

    /// The address, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a provider's `email` field names this address (ASCII
    /// case-insensitive; providers keep the case people typed).
    pub fn matches(&self, provider_email: &str) -> bool {
        provider_email.trim().eq_ignore_ascii_case(&self.0)
    }
}

impl fmt::Display for VerifiedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifiers::RequestId;
    use crate::request::tests::{hotfix_admin, t0, user};
    use crate::request::{AccessRequest, IssueRefusal, RequestState};
    use crate::role::{ApprovalPath, Role};
    use crate::role::{Policy, RequestInput};
    use crate::subject_key::SubjectKey;
    use crate::{Approvers, People};
    use std::collections::BTreeMap;

    fn d(s: &str) -> HumanDuration {
        HumanDuration::parse(s).unwrap()
    }

    fn role() -> Role {
        Role {
            on_call: Some(OnCallRule {
                source: "pagerduty:pd:PSCHED1".into(),
                max_duration: d("2h"),
            }),
            ..hotfix_admin()
        }
    }

    fn pending(duration: &str) -> AccessRequest {
        let alice = user("alice", &["engineers"]);
        let input = RequestInput {
            role: "hotfix-admin".into(),
            hosts: vec!["web-1".into()],
            duration: Some(duration.into()),
            reason: "INC-1 disk".into(),
            ..RequestInput::default()
        };
        let checked = Policy::new([role()])
            .unwrap()
            .check_request(&alice, &input, t0())
            .unwrap();
        let id = RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        AccessRequest::submit(id, &alice, checked, t0(), d("24h"))
    }

    fn subject() -> SubjectKey {
        let key =
            ssh_key::PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap();
        SubjectKey::from_key_data(key.public_key().key_data().clone(), &[]).unwrap()
    }

    fn scope(r: &AccessRequest, role: &Role) -> Result<(), IssueRefusal> {
        let people = People::default();
        let current = BTreeMap::new();
        let ctx = Approvers {
            people: &people,
            current: &current,
        };
        let alice = user("alice", &["engineers"]);
        r.certificate_scope(Some(role), &alice, subject(), &ctx, t0())
            .map(drop)
    }

    #[test]
    fn on_call_approval_binds_the_snapshot() {
        // issue 17: an on-call approval is a decision recorded against the
        // exact request; any later change of content voids it.
        let mut r = pending("1h");
        assert_eq!(r.state, RequestState::Pending);
        let w = r.approve_on_call(&role(), "PD-ONCALL-1", t0()).unwrap();
        assert_eq!(r.state, RequestState::Approved);
        assert_eq!(r.path, ApprovalPath::OnCall);
        assert_eq!(w.end - w.start, chrono::TimeDelta::hours(1));
        assert_eq!(scope(&r, &role()), Ok(()));

        let mut changed = r.clone();
        changed.reason = "something else".into();
        assert_eq!(scope(&changed, &role()), Err(IssueRefusal::ContentChanged));

        let mut moved = role();
        if let Some(rule) = &mut moved.on_call {
            rule.source = "pagerduty:pd:POTHER".into();
        }
        assert!(matches!(
            scope(&r, &moved),
            Err(IssueRefusal::PolicyNotSatisfied(_))
        ));
        assert!(matches!(
            scope(&r, &hotfix_admin()),
            Err(IssueRefusal::PolicyNotSatisfied(_))
        ));
    }

    #[test]
    fn on_call_rule_limits() {
        let mut long = pending("3h");
        assert!(matches!(
            long.approve_on_call(&role(), "x", t0()),
            Err(OnCallNotApplicable::TooLong { .. })
        ));
        assert_eq!(long.state, RequestState::Pending);
        let mut none = pending("1h");
        assert_eq!(
            none.approve_on_call(&hotfix_admin(), "x", t0()),
            Err(OnCallNotApplicable::NoRule)
        );
        let mut twice = pending("1h");
        twice.approve_on_call(&role(), "x", t0()).unwrap();
        assert_eq!(
            twice.approve_on_call(&role(), "x", t0()),
            Err(OnCallNotApplicable::NotPending)
        );
        let mut scheduled = pending("1h");
        scheduled.start = Some(t0() + chrono::TimeDelta::hours(2));
        assert_eq!(
            scheduled.approve_on_call(&role(), "x", t0()),
            Err(OnCallNotApplicable::Scheduled)
        );
    }

    #[test]
    fn verified_emails() {
        let ok = |s: &str, want: &str| assert_eq!(VerifiedEmail::parse(s).unwrap().as_str(), want);
        ok("Alice@Example.COM", "alice@example.com");
        ok("a.b+tag@sub.example.org", "a.b+tag@sub.example.org");
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "a b@example.com",
            "alice@exa mple.com",
            "alice@@example.com",
            "alice@.example.com",
            "ålice@example.com",
            "alice@example.com\n",
        ] {
            let trimmed_ok = bad == "alice@example.com\n";
            assert_eq!(VerifiedEmail::parse(bad).is_ok(), trimmed_ok, "{bad:?}");
        }
        let e = VerifiedEmail::parse("alice@example.com").unwrap();
        assert!(e.matches("ALICE@example.com"));
        assert!(!e.matches("alice@example.co"));
    }
}
