//! Permissions as types: `Admin`, `Approver` and `ReportReader` exist only
//! after their check (private fields, the constructor checks), and the use
//! cases take them instead of a `bool`. `Auditor` lives beside the audit
//! views it opens (`audit_views::Auditor`).

use tpa_core::{AccessRequest, Policy, User};

use super::audit_views::Auditor;
use super::error::WorkflowError;
use crate::config::Config;
use crate::refusal::Refusal;

/// Proof that a user is in `auth.admin_groups`.
#[derive(Debug, Clone, Copy)]
pub struct Admin {
    _checked: (),
}

impl Admin {
    /// The administrator capability for `user`, if they have it.
    pub fn check(config: &Config, user: &User) -> Option<Self> {
        config.is_admin(user).then_some(Admin { _checked: () })
    }
}

/// Proof that a user is in an approver group of one request's role (any
/// stage): who may see, review and end the request's grant.
#[derive(Debug, Clone, Copy)]
pub struct Approver {
    _checked: (),
}

impl Approver {
    /// The approver capability of `user` for `request`, if they have it.
    pub fn of(policy: &Policy, user: &User, request: &AccessRequest) -> Option<Self> {
        policy
            .role(&request.role)
            .is_some_and(|role| role.stages.iter().any(|s| user.in_group(&s.group)))
            .then_some(Approver { _checked: () })
    }
}

/// Who may see a request: its requester or an approver of its role.
#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    /// The person who asked (any identity of theirs).
    Requester,
    /// An approver of the request's role.
    Approver(Approver),
}

impl Viewer {
    /// How `user` may see `request`, if at all.
    pub fn of(policy: &Policy, user: &User, request: &AccessRequest) -> Option<Self> {
        if request.is_requester(user, policy.people()) {
            Some(Viewer::Requester)
        } else {
            Approver::of(policy, user, request).map(Viewer::Approver)
        }
    }
}

/// Proof that a user may read the access report: an auditor or an
/// administrator.
#[derive(Debug, Clone, Copy)]
pub struct ReportReader {
    _checked: (),
}

impl ReportReader {
    /// The capability for `user`, or `not_auditor`.
    pub fn check(config: &Config, user: &User) -> Result<Self, WorkflowError> {
        if Admin::check(config, user).is_some() || Auditor::check(&config.auditors, user).is_ok() {
            Ok(ReportReader { _checked: () })
        } else {
            Err(WorkflowError::Refused {
                code: Refusal::NotAuditor,
                message: "only auditors ([auditors] groups) and administrators \
                          (auth.admin_groups) read the access report"
                    .to_owned(),
            })
        }
    }
}
