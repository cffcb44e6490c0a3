//! The access-request state machine. No I/O: the store persists what these
//! transitions decide.
//!
//! ```text
//! pending ──approve (all stages)──▶ approved ──window end──▶ ended
//!    │ ├─deny──▶ denied                │ ├─revoke──▶ revoked
//!    │ ├─cancel─▶ cancelled            │ └─cancel──▶ cancelled (ends early)
//!    │ └─pending TTL──▶ expired
//! ```
//!
//! A certificate scope comes only from [`AccessRequest::certificate_scope`],
//! which re-checks at signing time: the caller is the requester and may still
//! request the role, the request is approved, the window holds, the approvals
//! still satisfy the role's policy, and the content is what was approved.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use crate::duration::HumanDuration;
use crate::grant::{Grant, field};
use crate::host::HostName;
use crate::identifiers::{RequestId, RoleName, Username};
use crate::identity::{GroupName, Identity, People, User};
use crate::oncall::{AutomatedApproval, OnCallNotApplicable};
use crate::role::{ApprovalPath, CheckedRequest, Role};
use crate::subject_key::SubjectKey;
use crate::template::{ApprovedScope, CertOrigin};

pub use crate::text::MAX_COMMENT;
use crate::text::{FreeText, TextError, TextField};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved; access runs inside the window.
    Approved,
    /// An approver said no.
    Denied,
    /// Nobody decided before the pending TTL ran out.
    Expired,
    /// The requester withdrew it (or ended it early).
    Cancelled,
    /// Revoked after approval.
    Revoked,
}

impl RequestState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Cancelled => "cancelled",
            RequestState::Revoked => "revoked",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Denied,
            Self::Expired,
            Self::Cancelled,
            Self::Revoked,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The approved access window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When access starts.
    pub start: DateTime<Utc>,
    /// When access ends.
    pub end: DateTime<Utc>,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Who approved.
    pub approver: Identity,
    /// Their name, for display.
    pub approver_username: Username,
    /// The stage (index into the role's stages) it counts for.
    pub stage: usize,
    /// The stage's fingerprint ([`crate::ApprovalStage::fingerprint`]) when
    /// it was approved: a changed, reordered or removed stage no longer matches.
    pub stage_hash: String,
    /// The group through which the approver qualified, as recorded.
    pub group: GroupName,
    /// The approver's optional comment.
    pub comment: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The request content hash the approver saw (after any narrowing they made).
    pub content_hash: String,
}

/// An access request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// Id.
    pub id: RequestId,
    /// Who asked.
    pub requester: Identity,
    /// Their name (key ids).
    pub requester_username: Username,
    /// The role.
    pub role: RoleName,
    /// The hosts (possibly narrowed by an approver).
    pub hosts: BTreeSet<HostName>,
    /// The window length (possibly shortened by an approver).
    pub duration: HumanDuration,
    /// Why.
    pub reason: String,
    /// Ticket or incident id.
    pub ticket: Option<String>,
    /// Scheduled start.
    pub start: Option<DateTime<Utc>>,
    /// How it gets approved.
    pub path: ApprovalPath,
    /// The exact certificate scope approvers approve (covered by the content
    /// hash). `None` only for requests stored before snapshots existed: such
    /// a request takes its snapshot from the role at its next approval, and
    /// one already approved gets no certificate (ask again).
    pub grant: Option<Grant>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it expires if still pending.
    pub pending_until: DateTime<Utc>,
    /// Where it stands.
    pub state: RequestState,
    /// Approvals so far, in order.
    pub approvals: Vec<Approval>,
    /// The on-call approval, when an on-call check approved the request.
    pub automated: Option<crate::oncall::AutomatedApproval>,
    /// The window, once approved.
    pub window: Option<Window>,
    /// Who made the final decision other than approval (deny, cancel, revoke).
    pub decided_by: Option<Identity>,
    /// Their comment.
    pub comment: Option<String>,
}

/// How an approver narrows a request while approving; never wider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// A shorter duration.
    pub duration: Option<HumanDuration>,
    /// A subset of the hosts.
    pub hosts: Option<BTreeSet<HostName>>,
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveOutcome {
    /// Recorded; more approvals are needed.
    Recorded {
        /// The stage still open.
        stage: usize,
        /// Approvals still needed in it.
        still_needed: u32,
    },
    /// That was the last one: the request is approved.
    Approved(Window),
}

/// Why a decision (approve, deny, cancel, revoke) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionRefusal {
    /// Only pending requests can be decided.
    #[error("the request is {0}, not pending; it can no longer be decided")]
    NotPending(RequestState),
    /// The requester tried to decide their own request.
    #[error("you cannot approve or deny your own request")]
    OwnRequest,
    /// This approver already approved (at any stage).
    #[error("you have already approved this request; each approver counts once")]
    AlreadyApproved,
    /// Not a member of the group the current stage needs.
    #[error("approval now needs a member of {group}; you are not one")]
    NotApprover {
        /// The group needed.
        group: String,
    },
    /// Not an approver of this role at all.
    #[error("you are not an approver for role {0}")]
    NotRoleApprover(RoleName),
    /// Narrowing that widens.
    #[error("an approver may only shorten the duration or remove hosts: {0}")]
    Widening(String),
    /// Comment refused by the free-text rule (length, control, format or
    /// bidi characters).
    #[error("{0}")]
    BadComment(TextError),
    /// Only the requester may cancel.
    #[error("only the requester can cancel a request")]
    NotRequester,
    /// Nothing to cancel or revoke.
    #[error("the request is {0} and its window is over; nothing to end")]
    NotActive(RequestState),
}

impl DecisionRefusal {
    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            DecisionRefusal::NotPending(_) => "not_pending",
            DecisionRefusal::OwnRequest => "own_request",
            DecisionRefusal::AlreadyApproved => "already_approved",
            DecisionRefusal::NotApprover { .. } | DecisionRefusal::NotRoleApprover(_) => {
                "not_approver"
            }
            DecisionRefusal::Widening(_) => "widening",
            DecisionRefusal::BadComment(e) => e.code(),
            DecisionRefusal::NotRequester => "not_requester",
            DecisionRefusal::NotActive(_) => "not_active",
        }
    }
}

/// Why no certificate may be issued for a request now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueRefusal {
    /// Another user's request.
    #[error("this request belongs to someone else")]
    NotYours,
    /// Not approved (pending, denied, expired, cancelled, revoked).
    #[error("the request is {0}; certificates are issued only for approved requests")]
    NotApproved(RequestState),
    /// The window has not started.
    #[error("the approved window starts at {0}")]
    NotStarted(DateTime<Utc>),
    /// The window is over.
    #[error("the approved window ended at {0}")]
    WindowEnded(DateTime<Utc>),
    /// The approvals no longer satisfy the role (policy changed, approver removed).
    #[error("the approvals no longer satisfy role {0}'s policy; ask again")]
    PolicyNotSatisfied(RoleName),
    /// The requester may no longer request the role.
    #[error("you may no longer request role {0}")]
    RequesterNotAllowed(RoleName),
    /// The stored request differs from what was approved.
    #[error("the request's content differs from what was approved")]
    ContentChanged,
    /// The role no longer exists.
    #[error("role {0} no longer exists")]
    RoleGone(RoleName),
    /// An approval no longer counts (stage changed, approver left the group,
    /// same person as the requester) or the role needs more approvals.
    #[error("the request needs re-approval because {0}")]
    NeedsReapproval(String),
    /// The role as configured now conflicts with the approved grant.
    #[error("{0}; ask again")]
    GrantConflict(#[from] crate::grant::GrantConflict),
}

impl IssueRefusal {
    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            IssueRefusal::NotYours => "not_yours",
            IssueRefusal::NotApproved(_) => "not_approved",
            IssueRefusal::NotStarted(_) => "window_not_started",
            IssueRefusal::WindowEnded(_) => "window_ended",
            IssueRefusal::PolicyNotSatisfied(_) => "policy_not_satisfied",
            IssueRefusal::RequesterNotAllowed(_) => "role_not_allowed",
            IssueRefusal::ContentChanged => "content_changed",
            IssueRefusal::RoleGone(_) => "unknown_role",
            IssueRefusal::NeedsReapproval(_) => "needs_reapproval",
            IssueRefusal::GrantConflict(_) => "role_changed",
        }
    }
}

/// What the approval rules need to know about people as they are now.
#[derive(Debug, Clone, Copy)]
pub struct Approvers<'a> {
    /// Who is one person.
    pub people: &'a People,
    /// The current groups of earlier approvers (re-read the way they are at
    /// decision time), by identity. An identity missing here is no longer a
    /// member of any group.
    pub current: &'a BTreeMap<Identity, BTreeSet<GroupName>>,
}

/// An approval that stopped counting, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voided {
    /// The approval, as it was recorded.
    pub approval: Approval,
    /// Why it no longer counts.
    pub why: String,
}

/// What [`AccessRequest::revalidate`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revalidation {
    /// The approvals removed.
    pub voided: Vec<Voided>,
    /// Set when an approved request went back to pending: why.
    pub reopened: Option<String>,
}

impl Revalidation {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.voided.is_empty() && self.reopened.is_none()
    }

    /// One sentence for people: "needs re-approval because …".
    pub fn why(&self) -> String {
        let mut parts: Vec<String> = self.voided.iter().map(|v| v.why.clone()).collect();
        if let Some(r) = &self.reopened
            && !parts.contains(r)
        {
            parts.push(r.clone());
        }
        parts.join("; ")
    }
}

impl AccessRequest {
    /// A new request from a policy-checked input. Auto-approved and break-glass
    /// requests are approved at once.
    pub fn submit(
        id: RequestId,
        requester: &User,
        checked: CheckedRequest,
        now: DateTime<Utc>,
        pending_ttl: HumanDuration,
    ) -> Self {
        let pending_ttl = TimeDelta::from_std(pending_ttl.get()).unwrap_or(TimeDelta::hours(24));
        let mut request = Self {
            id,
            requester: requester.identity.clone(),
            requester_username: requester.username.clone(),
            role: checked.role,
            hosts: checked.hosts,
            duration: checked.duration,
            reason: checked.reason,
            ticket: checked.ticket,
            start: checked.start,
            path: checked.path,
            grant: Some(checked.grant),
            created_at: now,
            pending_until: now + pending_ttl,
            state: RequestState::Pending,
            approvals: Vec::new(),
            automated: None,
            window: None,
            decided_by: None,
            comment: None,
        };
        if matches!(request.path, ApprovalPath::Auto | ApprovalPath::BreakGlass) {
            request.open_window(now);
        }
        request
    }

    fn open_window(&mut self, now: DateTime<Utc>) {
        let start = self.start.filter(|s| *s > now).unwrap_or(now);
        let length = TimeDelta::from_std(self.duration.get()).unwrap_or(TimeDelta::zero());
        self.window = Some(Window {
            start,
            end: start + length,
        });
        self.state = RequestState::Approved;
    }

    /// SHA-256 over the fields an approval covers (length-prefixed,
    /// versioned): who, role, hosts, duration, start, reason, ticket and the
    /// grant snapshot (principals, extensions, critical options, cert TTL).
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        let version: &[u8] = if self.grant.is_some() {
            b"tpa-request-v2"
        } else {
            b"tpa-request-v1"
        };
        field(&mut h, version);
        field(&mut h, self.id.as_str().as_bytes());
        field(&mut h, self.requester.issuer().as_bytes());
        field(&mut h, self.requester.subject().as_bytes());
        field(&mut h, self.role.as_str().as_bytes());
        field(&mut h, (self.hosts.len() as u64).to_be_bytes().as_slice());
        for host in &self.hosts {
            field(&mut h, host.as_str().as_bytes());
        }
        field(&mut h, self.duration.as_secs().to_be_bytes().as_slice());
        field(
            &mut h,
            self.start
                .map_or(0, |s| s.timestamp())
                .to_be_bytes()
                .as_slice(),
        );
        field(&mut h, self.reason.as_bytes());
        field(&mut h, self.ticket.as_deref().unwrap_or("").as_bytes());
        if let Some(grant) = &self.grant {
            grant.hash_into(&mut h);
        }
        hex::encode(h.finalize())
    }

    /// Moves a pending request past its pending TTL to expired. Returns whether it did.
    pub fn expire_if_due(&mut self, now: DateTime<Utc>) -> bool {
        if self.state == RequestState::Pending && now >= self.pending_until {
            self.state = RequestState::Expired;
            return true;
        }
        false
    }

    /// The first stage that still needs approvals, and how many (None when all are met).
    pub fn open_stage(&self, role: &Role) -> Option<(usize, u32)> {
        role.stages.iter().enumerate().find_map(|(i, stage)| {
            let got = self.valid_approvals_for(role, i);
            (got < stage.approvals).then(|| (i, stage.approvals - got))
        })
    }

    /// Approvals counted for stage `index`: recorded for that stage as it is
    /// defined now, one per person (username), never the requester's. Group
    /// membership and identity links are checked by [`Self::revalidate`].
    fn valid_approvals_for(&self, role: &Role, index: usize) -> u32 {
        let Some(stage) = role.stages.get(index) else {
            return 0;
        };
        let fingerprint = stage.fingerprint();
        let mut seen = BTreeSet::new();
        let mut count = 0u32;
        for a in &self.approvals {
            if a.approver == self.requester
                || a.approver_username == self.requester_username
                || !seen.insert(&a.approver_username)
            {
                continue;
            }
            if a.stage == index && a.stage_hash == fingerprint && a.group == stage.group {
                count += 1;
            }
        }
        count
    }

    /// Why `a` no longer counts for its stage, if it does not.
    fn approval_problem(
        &self,
        a: &Approval,
        role: &Role,
        approvers: &Approvers<'_>,
    ) -> Option<String> {
        let Some(stage) = role.stages.get(a.stage) else {
            return Some(format!(
                "stage {} of role {} that {} approved was removed",
                a.stage + 1,
                role.name,
                a.approver_username
            ));
        };
        if a.stage_hash != stage.fingerprint() || a.group != stage.group {
            return Some(format!(
                "stage {} of role {} changed since {} approved it (now {} approval(s) from {})",
                a.stage + 1,
                role.name,
                a.approver_username,
                stage.approvals,
                stage.group
            ));
        }
        if a.approver == self.requester
            || approvers
                .people
                .same_person(&a.approver_username, &self.requester_username)
        {
            return Some(format!(
                "{} is the same person as the requester",
                a.approver_username
            ));
        }
        let member = approvers
            .current
            .get(&a.approver)
            .is_some_and(|groups| groups.contains(&a.group));
        if !member {
            return Some(format!(
                "{} is no longer a member of {}",
                a.approver_username, a.group
            ));
        }
        None
    }

    /// Removes every approval that no longer counts (its stage changed or is
    /// gone, its approver left the stage's group, or is the same person as
    /// the requester or as an earlier approver). An approved request whose
    /// approvals no longer satisfy the role goes back to pending, without a
    /// window, for the same pending time it had. Auto-approved and
    /// break-glass requests have no approvals and are left alone.
    pub fn revalidate(
        &mut self,
        role: &Role,
        approvers: &Approvers<'_>,
        now: DateTime<Utc>,
    ) -> Revalidation {
        if self.path != ApprovalPath::Stages {
            return Revalidation::default();
        }
        let mut kept: Vec<Approval> = Vec::with_capacity(self.approvals.len());
        let mut voided = Vec::new();
        for a in std::mem::take(&mut self.approvals) {
            let twice = kept.iter().any(|k| {
                approvers
                    .people
                    .same_person(&k.approver_username, &a.approver_username)
            });
            let problem = self.approval_problem(&a, role, approvers).or_else(|| {
                twice.then(|| {
                    format!(
                        "{} is the same person as an earlier approver",
                        a.approver_username
                    )
                })
            });
            match problem {
                Some(why) => voided.push(Voided { approval: a, why }),
                None => kept.push(a),
            }
        }
        self.approvals = kept;
        let mut reopened = None;
        if self.state == RequestState::Approved
            && self.window.is_some_and(|w| now < w.end)
            && let Some((stage, needed)) = self.open_stage(role)
        {
            let group = role
                .stages
                .get(stage)
                .map(|s| s.group.to_string())
                .unwrap_or_default();
            reopened = Some(format!("{needed} more approval(s) from {group} are needed"));
            let pending_for = self.pending_until - self.created_at;
            self.state = RequestState::Pending;
            self.window = None;
            self.pending_until = now + pending_for;
        }
        Revalidation { voided, reopened }
    }

    /// Sets the comment of the approval just recorded.
    pub fn comment_last_approval(&mut self, comment: &str) -> Result<(), DecisionRefusal> {
        let comment = check_comment(comment)?;
        if let Some(a) = self.approvals.last_mut() {
            a.comment = comment;
        }
        Ok(())
    }

    /// Records `approver`'s approval for the open stage, narrowing first if
    /// asked. Earlier approvals are re-checked first ([`Self::revalidate`]):
    /// only those that still count can complete the request.
    pub fn approve(
        &mut self,
        role: &Role,
        approver: &User,
        narrowing: Narrowing,
        approvers: &Approvers<'_>,
        now: DateTime<Utc>,
    ) -> Result<ApproveOutcome, DecisionRefusal> {
        self.expire_if_due(now);
        if self.state != RequestState::Pending {
            return Err(DecisionRefusal::NotPending(self.state));
        }
        if approver.identity == self.requester
            || approvers
                .people
                .same_person(&approver.username, &self.requester_username)
        {
            return Err(DecisionRefusal::OwnRequest);
        }
        self.revalidate(role, approvers, now);
        if self.approvals.iter().any(|a| {
            a.approver == approver.identity
                || approvers
                    .people
                    .same_person(&a.approver_username, &approver.username)
        }) {
            return Err(DecisionRefusal::AlreadyApproved);
        }
        let stage = self.stage_for(role, approver)?;
        self.check_narrowing(&narrowing)?;
        self.narrow(role, narrowing);
        let (stage_hash, group) = role
            .stages
            .get(stage)
            .map(|s| (s.fingerprint(), s.group.clone()))
            .ok_or_else(|| DecisionRefusal::NotRoleApprover(role.name.clone()))?;
        self.approvals.push(Approval {
            approver: approver.identity.clone(),
            approver_username: approver.username.clone(),
            stage,
            stage_hash,
            group,
            comment: None,
            at: now,
            content_hash: self.content_hash(),
        });
        match self.open_stage(role) {
            Some((stage, still_needed)) => Ok(ApproveOutcome::Recorded {
                stage,
                still_needed,
            }),
            None => {
                self.open_window(now);
                Ok(ApproveOutcome::Approved(self.window.unwrap_or(Window {
                    start: now,
                    end: now,
                })))
            }
        }
    }

    /// The stage `approver` approves: the open one, whose group they must be
    /// in. Every stage met while still pending happens only when the role's
    /// policy was loosened; the approver must then be an approver of some
    /// stage, and counts for the last.
    fn stage_for(&self, role: &Role, approver: &User) -> Result<usize, DecisionRefusal> {
        match self.open_stage(role) {
            Some((stage, _)) => {
                let group = &role.stages[stage].group;
                if !approver.in_group(group) {
                    return Err(DecisionRefusal::NotApprover {
                        group: group.to_string(),
                    });
                }
                Ok(stage)
            }
            None => {
                if !role.stages.iter().any(|s| approver.in_group(&s.group)) {
                    return Err(DecisionRefusal::NotRoleApprover(role.name.clone()));
                }
                Ok(role.stages.len().saturating_sub(1))
            }
        }
    }

    /// An approver may shorten the request or drop hosts, never widen it.
    fn check_narrowing(&self, narrowing: &Narrowing) -> Result<(), DecisionRefusal> {
        if let Some(d) = narrowing.duration
            && d > self.duration
        {
            return Err(DecisionRefusal::Widening(format!(
                "duration {d} is longer than {}",
                self.duration
            )));
        }
        if let Some(hosts) = &narrowing.hosts {
            if hosts.is_empty() {
                return Err(DecisionRefusal::Widening(
                    "at least one host must remain".to_owned(),
                ));
            }
            if let Some(extra) = hosts.difference(&self.hosts).next() {
                return Err(DecisionRefusal::Widening(format!(
                    "host {extra} was not requested"
                )));
            }
        }
        Ok(())
    }

    /// Applies a checked narrowing, and narrows the grant snapshot with it.
    fn narrow(&mut self, role: &Role, narrowing: Narrowing) {
        if let Some(d) = narrowing.duration {
            self.duration = d;
        }
        if let Some(hosts) = narrowing.hosts {
            self.hosts = hosts;
        }
        // A request stored before snapshots existed takes its snapshot now:
        // the approver sees and approves the role as it is.
        let grant = self.grant.take().unwrap_or_else(|| role.grant(&self.hosts));
        // Fewer hosts can mean fewer host-scoped principals.
        self.grant = Some(Grant {
            principals: grant
                .principals
                .intersection(&role.principals_for(&self.hosts))
                .cloned()
                .collect(),
            ..grant
        });
    }

    /// Denies a pending request. Any member of one of the role's approver groups may deny.
    pub fn deny(
        &mut self,
        role: &Role,
        approver: &User,
        people: &People,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DecisionRefusal> {
        self.expire_if_due(now);
        if self.state != RequestState::Pending {
            return Err(DecisionRefusal::NotPending(self.state));
        }
        if self.is_requester(approver, people) {
            return Err(DecisionRefusal::OwnRequest);
        }
        if !role.stages.iter().any(|s| approver.in_group(&s.group)) {
            return Err(DecisionRefusal::NotRoleApprover(role.name.clone()));
        }
        let comment = check_comment(comment)?;
        self.state = RequestState::Denied;
        self.decided_by = Some(approver.identity.clone());
        self.comment = comment;
        Ok(())
    }

    /// Whether `user` is the requester: the same identity, or the same person
    /// ([`People`]: one username under any issuer, or linked usernames).
    pub fn is_requester(&self, user: &User, people: &People) -> bool {
        user.identity == self.requester
            || people.same_person(&user.username, &self.requester_username)
    }

    /// The requester withdraws a pending request or ends an approved one early.
    pub fn cancel(&mut self, by: &Identity, now: DateTime<Utc>) -> Result<(), DecisionRefusal> {
        if *by != self.requester {
            return Err(DecisionRefusal::NotRequester);
        }
        self.expire_if_due(now);
        self.end(RequestState::Cancelled, by, None, now)
    }

    /// Revokes an approved request (its certificates are revoked by the caller).
    pub fn revoke(
        &mut self,
        by: &Identity,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DecisionRefusal> {
        let comment = check_comment(comment)?;
        self.end(RequestState::Revoked, by, comment, now)
    }

    /// Ends a pending request because its requester was revoked (`tpa-ca
    /// revoke user`): it becomes `revoked` without a window, so no later
    /// approval can grant it. Refused unless the request is pending.
    pub fn revoke_pending(
        &mut self,
        by: &Identity,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DecisionRefusal> {
        let comment = check_comment(comment)?;
        self.expire_if_due(now);
        if self.state != RequestState::Pending {
            return Err(DecisionRefusal::NotPending(self.state));
        }
        self.state = RequestState::Revoked;
        self.decided_by = Some(by.clone());
        self.comment = comment;
        Ok(())
    }

    fn end(
        &mut self,
        to: RequestState,
        by: &Identity,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), DecisionRefusal> {
        match self.state {
            RequestState::Pending if to == RequestState::Cancelled => {}
            RequestState::Approved if self.window.is_some_and(|w| now < w.end) => {
                if let Some(w) = &mut self.window {
                    w.end = now.max(w.start);
                }
            }
            state => return Err(DecisionRefusal::NotActive(state)),
        }
        self.state = to;
        self.decided_by = Some(by.clone());
        self.comment = comment;
        Ok(())
    }

    /// The certificate scope for `caller` at `now`, re-checking everything.
    pub fn certificate_scope(
        &self,
        role: Option<&Role>,
        caller: &User,
        subject: SubjectKey,
        approvers: &Approvers<'_>,
        now: DateTime<Utc>,
    ) -> Result<ApprovedScope, IssueRefusal> {
        if caller.identity != self.requester {
            return Err(IssueRefusal::NotYours);
        }
        if self.state != RequestState::Approved {
            return Err(IssueRefusal::NotApproved(self.state));
        }
        let role = role.ok_or_else(|| IssueRefusal::RoleGone(self.role.clone()))?;
        let window = self.window.ok_or(IssueRefusal::NotApproved(self.state))?;
        if now < window.start {
            return Err(IssueRefusal::NotStarted(window.start));
        }
        if now >= window.end {
            return Err(IssueRefusal::WindowEnded(window.end));
        }
        if !role.requestable_by(caller) {
            return Err(IssueRefusal::RequesterNotAllowed(role.name.clone()));
        }
        if !self.hosts.iter().all(|h| role.covers(h)) || self.duration > role.max_duration {
            return Err(IssueRefusal::PolicyNotSatisfied(role.name.clone()));
        }
        match self.path {
            ApprovalPath::Stages => {
                if let Some(why) = self
                    .approvals
                    .iter()
                    .find_map(|a| self.approval_problem(a, role, approvers))
                {
                    return Err(IssueRefusal::NeedsReapproval(why));
                }
                if let Some((stage, needed)) = self.open_stage(role) {
                    let group = role
                        .stages
                        .get(stage)
                        .map(|s| s.group.to_string())
                        .unwrap_or_default();
                    return Err(IssueRefusal::NeedsReapproval(format!(
                        "{needed} more approval(s) from {group} are needed"
                    )));
                }
                let last = self
                    .approvals
                    .last()
                    .ok_or_else(|| IssueRefusal::PolicyNotSatisfied(role.name.clone()))?;
                if last.content_hash != self.content_hash() {
                    return Err(IssueRefusal::ContentChanged);
                }
            }
            ApprovalPath::Auto => {
                let ok = role
                    .auto_approve
                    .as_ref()
                    .is_some_and(|a| caller.in_group(&a.group) && self.duration <= a.max_duration);
                if !ok {
                    return Err(IssueRefusal::PolicyNotSatisfied(role.name.clone()));
                }
            }
            ApprovalPath::OnCall => self.check_on_call(role)?,
            ApprovalPath::BreakGlass => {
                let ok = role
                    .break_glass
                    .as_ref()
                    .is_some_and(|b| self.duration <= b.max_duration)
                    && self.ticket.is_some();
                if !ok {
                    return Err(IssueRefusal::PolicyNotSatisfied(role.name.clone()));
                }
            }
        }
        // The snapshot, narrowed by the role as it is now; never widened.
        let approved = self.grant.as_ref().ok_or_else(|| {
            IssueRefusal::NeedsReapproval(
                "it was approved before grant snapshots were recorded".to_owned(),
            )
        })?;
        let grant = approved.within(&role.grant(&self.hosts), &role.name)?;
        Ok(ApprovedScope {
            subject,
            origin: CertOrigin::Request {
                id: self.id.clone(),
                user: self.requester_username.clone(),
            },
            principals: grant.principals,
            extensions: grant.extensions,
            critical_options: grant.critical_options,
            window_end: window.end,
            cert_ttl: grant.cert_ttl,
            hosts: self.hosts.clone(),
        })
    }
}

fn check_comment(comment: &str) -> Result<Option<String>, DecisionRefusal> {
    let comment =
        FreeText::parse(TextField::Comment, comment).map_err(DecisionRefusal::BadComment)?;
    Ok((!comment.is_empty()).then(|| comment.into_string()))
}

/// On-call approvals (issue 17): the rule and the recorded approval are
/// in [`crate::oncall`].
impl AccessRequest {
    /// Approves a pending request because its requester is on call, per the
    /// role's on-call rule; `evidence` is the provider's answer id. The
    /// approval records the content hash of the request as it stands.
    pub fn approve_on_call(
        &mut self,
        role: &Role,
        evidence: &str,
        now: DateTime<Utc>,
    ) -> Result<Window, OnCallNotApplicable> {
        if self.state != RequestState::Pending
            || self.path != ApprovalPath::Stages
            || !self.approvals.is_empty()
        {
            return Err(OnCallNotApplicable::NotPending);
        }
        if self.start.is_some() {
            return Err(OnCallNotApplicable::Scheduled);
        }
        let rule = role.on_call.as_ref().ok_or(OnCallNotApplicable::NoRule)?;
        if self.duration > rule.max_duration {
            return Err(OnCallNotApplicable::TooLong {
                requested: self.duration,
                max: rule.max_duration,
            });
        }
        self.path = ApprovalPath::OnCall;
        self.automated = Some(AutomatedApproval {
            source: rule.source.clone(),
            evidence: evidence.to_owned(),
            at: now,
            content_hash: self.content_hash(),
        });
        let length =
            chrono::TimeDelta::from_std(self.duration.get()).unwrap_or(chrono::TimeDelta::zero());
        let window = Window {
            start: now,
            end: now + length,
        };
        self.window = Some(window);
        self.state = RequestState::Approved;
        Ok(window)
    }

    /// At signing time: the on-call approval still holds (the role still has
    /// the same on-call rule, the duration fits it, and the request is the
    /// content that was approved).
    pub(crate) fn check_on_call(&self, role: &Role) -> Result<(), IssueRefusal> {
        let approval = self
            .automated
            .as_ref()
            .ok_or_else(|| IssueRefusal::PolicyNotSatisfied(role.name.clone()))?;
        let holds = role.on_call.as_ref().is_some_and(|rule| {
            rule.source == approval.source && self.duration <= rule.max_duration
        });
        if !holds {
            return Err(IssueRefusal::PolicyNotSatisfied(role.name.clone()));
        }
        if approval.content_hash != self.content_hash() {
            return Err(IssueRefusal::ContentChanged);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cert_options::{CriticalOptions, Extensions, ForceCommand};
    use crate::host::HostPattern;
    use crate::identifiers::Principal;
    use crate::identity::GroupName;
    use crate::role::{ApprovalStage, AutoApprove, Policy, PolicyRefusal, RequestInput};
    use proptest::prelude::*;

    pub(crate) fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn d(s: &str) -> HumanDuration {
        HumanDuration::parse(s).unwrap()
    }

    fn groups(names: &[&str]) -> BTreeSet<GroupName> {
        names.iter().map(|g| GroupName::parse(g).unwrap()).collect()
    }

    pub(crate) fn user(name: &str, g: &[&str]) -> User {
        let username = Username::parse(name).unwrap();
        User {
            identity: Identity::local(&username),
            username,
            display_name: name.into(),
            groups: groups(g),
        }
    }

    /// The approver context of these tests: everyone's groups as `cast()`
    /// gives them, one person per username.
    pub(crate) fn ctx() -> Approvers<'static> {
        use std::sync::OnceLock;
        static PEOPLE: OnceLock<People> = OnceLock::new();
        static CURRENT: OnceLock<BTreeMap<Identity, BTreeSet<GroupName>>> = OnceLock::new();
        let current = CURRENT.get_or_init(|| {
            let mut map: BTreeMap<Identity, BTreeSet<GroupName>> = BTreeMap::new();
            for u in cast().into_iter().chain([user("frank", &["managers"])]) {
                map.entry(u.identity).or_default().extend(u.groups);
            }
            map
        });
        Approvers {
            people: PEOPLE.get_or_init(People::default),
            current,
        }
    }

    pub(crate) fn hotfix_admin() -> Role {
        Role {
            name: RoleName::parse("hotfix-admin").unwrap(),
            description: "elevated".into(),
            logins: [Principal::parse("root").unwrap()].into(),
            hosts: vec![
                HostPattern::parse("web-*").unwrap(),
                HostPattern::parse("db-1").unwrap(),
            ],
            max_duration: d("4h"),
            default_duration: d("1h"),
            cert_ttl: d("10m"),
            extensions: Extensions::new(),
            critical_options: CriticalOptions::default(),
            requestable_by: groups(&["engineers"]),
            stages: vec![
                ApprovalStage {
                    group: GroupName::parse("sre-leads").unwrap(),
                    approvals: 1,
                },
                ApprovalStage {
                    group: GroupName::parse("managers").unwrap(),
                    approvals: 1,
                },
            ],
            auto_approve: None,
            break_glass: None,
            on_call: None,
            require_reason: true,
            ticket_pattern: None,
            host_scope: None,
        }
    }

    fn read_only_debug() -> Role {
        Role {
            name: RoleName::parse("read-only-debug").unwrap(),
            description: "logs".into(),
            logins: [Principal::parse("debug").unwrap()].into(),
            hosts: vec![HostPattern::parse("web-*").unwrap()],
            max_duration: d("4h"),
            default_duration: d("1h"),
            cert_ttl: d("10m"),
            extensions: Extensions::new(),
            critical_options: CriticalOptions {
                force_command: Some(ForceCommand::parse("journalctl -f").unwrap()),
                source_address: None,
            },
            requestable_by: groups(&["engineers"]),
            stages: vec![ApprovalStage {
                group: GroupName::parse("sre-leads").unwrap(),
                approvals: 1,
            }],
            auto_approve: Some(AutoApprove {
                group: GroupName::parse("engineers").unwrap(),
                max_duration: d("1h"),
            }),
            break_glass: None,
            on_call: None,
            require_reason: false,
            ticket_pattern: None,
            host_scope: None,
        }
    }

    fn policy() -> Policy {
        Policy::new([hotfix_admin(), read_only_debug()]).unwrap()
    }

    fn input(role: &str, hosts: &[&str], duration: &str) -> RequestInput {
        RequestInput {
            role: role.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            duration: Some(duration.into()),
            reason: "INC-4411 disk full".into(),
            ..RequestInput::default()
        }
    }

    fn alice() -> User {
        user("alice", &["engineers"])
    }
    fn bob() -> User {
        user("bob", &["sre-leads"])
    }
    fn carol() -> User {
        user("carol", &["managers"])
    }

    fn submit(i: RequestInput) -> AccessRequest {
        let checked = policy().check_request(&alice(), &i, t0()).unwrap();
        let id = RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        AccessRequest::submit(id, &alice(), checked, t0(), d("24h"))
    }

    fn subject() -> SubjectKey {
        let key =
            ssh_key::PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519).unwrap();
        SubjectKey::from_key_data(key.public_key().key_data().clone(), &[]).unwrap()
    }

    fn check_refusal(i: RequestInput, who: &User, code: &str) {
        let err = policy().check_request(who, &i, t0()).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    }

    #[test]
    fn policy_refusals() {
        check_refusal(input("nope", &["web-1"], "1h"), &alice(), "unknown_role");
        check_refusal(
            input("Hotfix Admin", &["web-1"], "1h"),
            &alice(),
            "unknown_role",
        );
        check_refusal(
            input("hotfix-admin", &["web-1"], "1h"),
            &bob(),
            "role_not_allowed",
        );
        check_refusal(
            input("hotfix-admin", &["web-1"], "5h"),
            &alice(),
            "duration_too_long",
        );
        check_refusal(
            input("hotfix-admin", &["web-1"], "0"),
            &alice(),
            "bad_duration",
        );
        check_refusal(
            input("hotfix-admin", &["web-1"], "-1h"),
            &alice(),
            "bad_duration",
        );
        check_refusal(
            input("hotfix-admin", &["web-1"], "soon"),
            &alice(),
            "bad_duration",
        );
        check_refusal(
            input("hotfix-admin", &["db-2"], "1h"),
            &alice(),
            "host_not_in_role",
        );
        check_refusal(input("hotfix-admin", &[], "1h"), &alice(), "bad_host");
        check_refusal(
            input("hotfix-admin", &["Web 1"], "1h"),
            &alice(),
            "bad_host",
        );
        let mut i = input("hotfix-admin", &["web-1"], "1h");
        i.reason = "   ".into();
        check_refusal(i, &alice(), "reason_required");
        let mut i = input("hotfix-admin", &["web-1"], "1h");
        i.reason = "x".repeat(100_000);
        check_refusal(i, &alice(), "bad_reason");
        let mut i = input("hotfix-admin", &["web-1"], "1h");
        i.start = Some(t0() - TimeDelta::minutes(1));
        check_refusal(i, &alice(), "bad_start");
    }

    #[test]
    fn refusals_list_what_is_allowed() {
        let err = policy()
            .check_request(&alice(), &input("nope", &["web-1"], "1h"), t0())
            .unwrap_err();
        assert!(
            err.to_string().contains("hotfix-admin, read-only-debug"),
            "{err}"
        );
    }

    #[test]
    fn ticket_pattern_is_enforced() {
        let mut role = hotfix_admin();
        role.ticket_pattern = Some(crate::role::TicketPattern::parse("INC-[0-9]+").unwrap());
        let policy = Policy::new([role]).unwrap();
        let mut i = input("hotfix-admin", &["web-1"], "1h");
        assert_eq!(
            policy.check_request(&alice(), &i, t0()).unwrap_err().code(),
            "ticket_required"
        );
        i.ticket = Some("INC-12x".into());
        assert_eq!(
            policy.check_request(&alice(), &i, t0()).unwrap_err().code(),
            "ticket_mismatch"
        );
        i.ticket = Some("xINC-12".into());
        assert_eq!(
            policy.check_request(&alice(), &i, t0()).unwrap_err().code(),
            "ticket_mismatch"
        );
        i.ticket = Some("INC-12".into());
        assert!(policy.check_request(&alice(), &i, t0()).is_ok());
    }

    #[test]
    fn script_in_reason_is_kept_as_text() {
        let mut i = input("hotfix-admin", &["web-1"], "1h");
        i.reason = "<script>alert(1)</script>".into();
        let r = submit(i);
        assert_eq!(r.reason, "<script>alert(1)</script>");
    }

    #[test]
    fn auto_approve_applies_only_within_its_rule() {
        let r = submit(input("read-only-debug", &["web-1"], "1h"));
        assert_eq!(r.state, RequestState::Approved);
        assert_eq!(
            r.window,
            Some(Window {
                start: t0(),
                end: t0() + TimeDelta::hours(1)
            })
        );
        let r = submit(input("read-only-debug", &["web-1"], "2h"));
        assert_eq!(r.state, RequestState::Pending);
    }

    #[test]
    fn two_stages_in_order_then_approved() {
        let mut r = submit(input("hotfix-admin", &["web-1"], "2h"));
        assert_eq!(r.state, RequestState::Pending);
        // The manager cannot go first: stage 0 needs an SRE lead.
        let e = r
            .approve(
                &hotfix_admin(),
                &carol(),
                Narrowing::default(),
                &ctx(),
                t0(),
            )
            .unwrap_err();
        assert_eq!(e.code(), "not_approver");
        let out = r
            .approve(&hotfix_admin(), &bob(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        assert_eq!(
            out,
            ApproveOutcome::Recorded {
                stage: 1,
                still_needed: 1
            }
        );
        let later = t0() + TimeDelta::minutes(5);
        let out = r
            .approve(
                &hotfix_admin(),
                &carol(),
                Narrowing::default(),
                &ctx(),
                later,
            )
            .unwrap();
        let window = Window {
            start: later,
            end: later + TimeDelta::hours(2),
        };
        assert_eq!(
            out,
            ApproveOutcome::Approved(window),
            "duration counts from final approval"
        );
        assert_eq!(r.state, RequestState::Approved);
    }

    // Security review 2026-11-24: revoking a user ends their pending requests
    // too, so that an approval arriving afterwards cannot grant them.
    #[test]
    fn a_revoked_pending_request_cannot_be_approved() {
        let mut r = submit(input("hotfix-admin", &["web-1"], "2h"));
        r.approve(&hotfix_admin(), &bob(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        let admin = Identity::new("tpa:operator", "oncall").unwrap();
        r.revoke_pending(&admin, "compromised", t0()).unwrap();
        assert_eq!(r.state, RequestState::Revoked);
        assert_eq!(r.window, None);
        let e = r
            .approve(
                &hotfix_admin(),
                &carol(),
                Narrowing::default(),
                &ctx(),
                t0(),
            )
            .unwrap_err();
        assert_eq!(e.code(), "not_pending");
        let e = r.revoke_pending(&admin, "again", t0()).unwrap_err();
        assert_eq!(e.code(), "not_pending");
        let mut approved = submit(input("read-only-debug", &["web-1"], "1h"));
        approved.state = RequestState::Approved;
        assert!(approved.revoke_pending(&admin, "x", t0()).is_err());
    }

    #[test]
    fn separation_of_duties() {
        let mut r = submit(input("hotfix-admin", &["web-1"], "2h"));
        // The requester never approves, even when in the approver group.
        let alice_lead = user("alice", &["engineers", "sre-leads", "managers"]);
        assert_eq!(
            r.approve(
                &hotfix_admin(),
                &alice_lead,
                Narrowing::default(),
                &ctx(),
                t0()
            )
            .unwrap_err(),
            DecisionRefusal::OwnRequest
        );
        assert_eq!(
            r.deny(&hotfix_admin(), &alice_lead, &People::default(), "", t0())
                .unwrap_err(),
            DecisionRefusal::OwnRequest
        );
        // One person in both groups counts once.
        let both = user("erin", &["sre-leads", "managers"]);
        r.approve(&hotfix_admin(), &both, Narrowing::default(), &ctx(), t0())
            .unwrap();
        assert_eq!(
            r.approve(&hotfix_admin(), &both, Narrowing::default(), &ctx(), t0())
                .unwrap_err(),
            DecisionRefusal::AlreadyApproved
        );
        // issue 11: the same username at another issuer is the same person
        // and counts once.
        let mut other = both.clone();
        other.identity = Identity::new("https://idp.example", "erin").unwrap();
        assert_eq!(
            r.approve(&hotfix_admin(), &other, Narrowing::default(), &ctx(), t0())
                .unwrap_err(),
            DecisionRefusal::AlreadyApproved
        );
        // A different person at another issuer counts.
        let mut carol_sso = carol();
        carol_sso.identity = Identity::new("https://idp.example", "c-123").unwrap();
        let mut current = ctx().current.clone();
        current.insert(carol_sso.identity.clone(), carol_sso.groups.clone());
        let people = People::default();
        let approvers = Approvers {
            people: &people,
            current: &current,
        };
        assert!(matches!(
            r.approve(
                &hotfix_admin(),
                &carol_sso,
                Narrowing::default(),
                &approvers,
                t0()
            ),
            Ok(ApproveOutcome::Approved(_))
        ));
    }

    // issue 11, reproduction 4: one person with two identities (a local
    // account and SSO subjects with the same username) never approves their
    // own request, and two identities of one approver count once.
    #[test]
    fn one_person_with_two_identities_cannot_approve_own_request() {
        let role = hotfix_admin();
        let mut r = submit(input("hotfix-admin", &["web-1"], "2h"));
        let mut alice_sso = user("alice", &["sre-leads", "managers"]);
        alice_sso.identity = Identity::new("https://idp.example", "sub-1").unwrap();
        assert_eq!(
            r.approve(&role, &alice_sso, Narrowing::default(), &ctx(), t0())
                .unwrap_err(),
            DecisionRefusal::OwnRequest
        );
        assert_eq!(
            r.deny(&role, &alice_sso, &People::default(), "", t0())
                .unwrap_err(),
            DecisionRefusal::OwnRequest
        );
        // With a link, a differently named account of alice is alice too.
        let people = People::new(vec![vec![
            Username::parse("alice").unwrap(),
            Username::parse("asmith").unwrap(),
        ]])
        .unwrap();
        let linked = user("asmith", &["sre-leads"]);
        let approvers = Approvers {
            people: &people,
            current: ctx().current,
        };
        assert_eq!(
            r.approve(&role, &linked, Narrowing::default(), &approvers, t0())
                .unwrap_err(),
            DecisionRefusal::OwnRequest
        );
        assert!(r.is_requester(&linked, &people));
        assert_eq!(r.state, RequestState::Pending);
    }

    #[test]
    fn narrowing_never_widens() {
        let mut r = submit(input("hotfix-admin", &["web-1", "web-2"], "2h"));
        let wider = Narrowing {
            duration: Some(d("3h")),
            hosts: None,
        };
        assert_eq!(
            r.approve(&hotfix_admin(), &bob(), wider, &ctx(), t0())
                .unwrap_err()
                .code(),
            "widening"
        );
        let extra = Narrowing {
            duration: None,
            hosts: Some([HostName::parse("web-3").unwrap()].into()),
        };
        assert_eq!(
            r.approve(&hotfix_admin(), &bob(), extra, &ctx(), t0())
                .unwrap_err()
                .code(),
            "widening"
        );
        let empty = Narrowing {
            duration: None,
            hosts: Some(BTreeSet::new()),
        };
        assert_eq!(
            r.approve(&hotfix_admin(), &bob(), empty, &ctx(), t0())
                .unwrap_err()
                .code(),
            "widening"
        );
        let narrower = Narrowing {
            duration: Some(d("30m")),
            hosts: Some([HostName::parse("web-2").unwrap()].into()),
        };
        r.approve(&hotfix_admin(), &bob(), narrower, &ctx(), t0())
            .unwrap();
        r.approve(
            &hotfix_admin(),
            &carol(),
            Narrowing::default(),
            &ctx(),
            t0(),
        )
        .unwrap();
        assert_eq!(r.duration, d("30m"));
        assert_eq!(r.hosts.len(), 1);
        let scope = r
            .certificate_scope(Some(&hotfix_admin()), &alice(), subject(), &ctx(), t0())
            .unwrap();
        assert_eq!(scope.window_end, t0() + TimeDelta::minutes(30));
    }

    #[test]
    fn decisions_on_finished_requests_are_refused() {
        let role = hotfix_admin();
        let mut denied = submit(input("hotfix-admin", &["web-1"], "2h"));
        assert_eq!(
            denied
                .deny(
                    &role,
                    &user("eve", &["engineers"]),
                    &People::default(),
                    "",
                    t0()
                )
                .unwrap_err()
                .code(),
            "not_approver"
        );
        denied
            .deny(&role, &bob(), &People::default(), "not now", t0())
            .unwrap();
        assert_eq!(denied.comment.as_deref(), Some("not now"));
        assert_eq!(
            denied
                .approve(&role, &carol(), Narrowing::default(), &ctx(), t0())
                .unwrap_err(),
            DecisionRefusal::NotPending(RequestState::Denied)
        );

        let mut expired = submit(input("hotfix-admin", &["web-1"], "2h"));
        let late = t0() + TimeDelta::hours(25);
        assert_eq!(
            expired
                .approve(&role, &bob(), Narrowing::default(), &ctx(), late)
                .unwrap_err(),
            DecisionRefusal::NotPending(RequestState::Expired)
        );

        let mut cancelled = submit(input("hotfix-admin", &["web-1"], "2h"));
        assert_eq!(
            cancelled.cancel(&bob().identity, t0()).unwrap_err(),
            DecisionRefusal::NotRequester
        );
        cancelled.cancel(&alice().identity, t0()).unwrap();
        assert_eq!(
            cancelled
                .approve(&role, &bob(), Narrowing::default(), &ctx(), t0())
                .unwrap_err(),
            DecisionRefusal::NotPending(RequestState::Cancelled)
        );

        let mut approved = submit(input("hotfix-admin", &["web-1"], "2h"));
        approved
            .approve(&role, &bob(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        approved
            .approve(&role, &carol(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        assert_eq!(
            approved
                .approve(
                    &role,
                    &user("frank", &["managers"]),
                    Narrowing::default(),
                    &ctx(),
                    t0()
                )
                .unwrap_err(),
            DecisionRefusal::NotPending(RequestState::Approved)
        );
        assert_eq!(
            approved
                .deny(&role, &bob(), &People::default(), "", t0())
                .unwrap_err(),
            DecisionRefusal::NotPending(RequestState::Approved)
        );
        let e = approved.deny(&role, &bob(), &People::default(), &"x".repeat(3000), t0());
        assert!(e.is_err());
    }

    #[test]
    fn certificate_scope_rechecks_everything() {
        let role = hotfix_admin();
        let mut r = submit(input("hotfix-admin", &["web-1"], "2h"));
        let scope = |r: &AccessRequest, who: &User, at| {
            r.certificate_scope(Some(&role), who, subject(), &ctx(), at)
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(scope(&r, &alice(), t0()), Err("not_approved"));
        r.approve(&role, &bob(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        assert_eq!(scope(&r, &alice(), t0()), Err("not_approved"));
        r.approve(&role, &carol(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        assert_eq!(scope(&r, &alice(), t0()), Ok(()));
        assert_eq!(scope(&r, &bob(), t0()), Err("not_yours"));
        assert_eq!(
            scope(&r, &alice(), t0() + TimeDelta::hours(2)),
            Err("window_ended")
        );
        assert_eq!(
            scope(&r, &user("alice", &[]), t0()),
            Err("role_not_allowed"),
            "removed from the group"
        );
        assert_eq!(
            r.certificate_scope(None, &alice(), subject(), &ctx(), t0())
                .unwrap_err()
                .code(),
            "unknown_role"
        );
        // A policy that now needs two managers is no longer satisfied
        // (issue 11: the changed stage's approval no longer counts).
        let mut stricter = role.clone();
        stricter.stages[1].approvals = 2;
        assert_eq!(
            r.certificate_scope(Some(&stricter), &alice(), subject(), &ctx(), t0())
                .unwrap_err()
                .code(),
            "needs_reapproval"
        );
        // Tampering with the stored hosts after approval is caught.
        let mut tampered = r.clone();
        tampered.hosts.insert(HostName::parse("web-9").unwrap());
        assert_eq!(scope(&tampered, &alice(), t0()), Err("content_changed"));
        // Scope carries exactly the role's logins and options and the approved hosts.
        let s = r
            .certificate_scope(Some(&role), &alice(), subject(), &ctx(), t0())
            .unwrap();
        assert_eq!(s.principals, role.logins);
        assert_eq!(s.hosts, r.hosts);
        assert_eq!(
            s.origin.key_id(),
            "tpa:request=req_aaaaaaaaaaaaaaaaaaaaaaaaaa:user=alice"
        );
        // Cancelling ends the window at once.
        r.cancel(&alice().identity, t0() + TimeDelta::minutes(1))
            .unwrap();
        assert_eq!(
            scope(&r, &alice(), t0() + TimeDelta::minutes(1)),
            Err("not_approved")
        );
        let mut revoked = r.clone();
        assert_eq!(
            revoked
                .revoke(&bob().identity, "", t0())
                .unwrap_err()
                .code(),
            "not_active"
        );
    }

    #[test]
    fn host_scoped_principals_name_the_groups_of_the_approved_hosts() {
        let mut role = hotfix_admin();
        let group = |name: &str, pattern: &str| crate::role::HostGroup {
            name: GroupName::parse(name).unwrap(),
            patterns: vec![HostPattern::parse(pattern).unwrap()],
        };
        role.host_scope = Some(vec![group("web", "web-*"), group("db", "db-*")]);
        role.hosts = vec![
            HostPattern::parse("web-*").unwrap(),
            HostPattern::parse("db-*").unwrap(),
        ];
        let hosts = |names: &[&str]| {
            names
                .iter()
                .map(|h| HostName::parse(h).unwrap())
                .collect::<BTreeSet<_>>()
        };
        let names = |set: BTreeSet<Principal>| {
            set.iter()
                .map(|p| p.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(role.principals_for(&hosts(&["web-1"]))), ["web:root"]);
        assert_eq!(
            names(role.principals_for(&hosts(&["web-1", "db-2"]))),
            ["db:root", "web:root"]
        );
        role.host_scope = None;
        assert_eq!(
            names(role.principals_for(&hosts(&["web-1", "db-2"]))),
            ["root"]
        );
    }

    #[test]
    fn scheduled_start_delays_the_window() {
        let role = hotfix_admin();
        let mut i = input("hotfix-admin", &["web-1"], "1h");
        i.start = Some(t0() + TimeDelta::hours(3));
        let mut r = submit(i);
        r.approve(&role, &bob(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        r.approve(&role, &carol(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        assert_eq!(r.window.unwrap().start, t0() + TimeDelta::hours(3));
        let e = r
            .certificate_scope(Some(&role), &alice(), subject(), &ctx(), t0())
            .unwrap_err();
        assert_eq!(e.code(), "window_not_started");
        assert!(
            r.certificate_scope(
                Some(&role),
                &alice(),
                subject(),
                &ctx(),
                t0() + TimeDelta::hours(3)
            )
            .is_ok()
        );
    }

    #[test]
    fn content_hash_depends_on_every_field() {
        let r = submit(input("hotfix-admin", &["web-1"], "2h"));
        let h = r.content_hash();
        type Change = Box<dyn Fn(&mut AccessRequest)>;
        let variants: Vec<Change> = vec![
            Box::new(|r| r.reason.push('x')),
            Box::new(|r| r.duration = d("1h")),
            Box::new(|r| {
                r.hosts.insert(HostName::parse("web-2").unwrap());
            }),
            Box::new(|r| r.ticket = Some("T".into())),
            Box::new(|r| r.role = RoleName::parse("read-only-debug").unwrap()),
            Box::new(|r| r.requester = Identity::new("x", "alice").unwrap()),
            Box::new(|r| r.start = Some(t0())),
        ];
        for change in variants {
            let mut c = r.clone();
            change(&mut c);
            assert_ne!(c.content_hash(), h);
        }
    }

    fn approved_hotfix() -> AccessRequest {
        let role = hotfix_admin();
        let mut r = submit(input("hotfix-admin", &["web-1"], "2h"));
        r.approve(&role, &bob(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        r.approve(&role, &carol(), Narrowing::default(), &ctx(), t0())
            .unwrap();
        assert_eq!(r.state, RequestState::Approved);
        r
    }

    // issue 11, reproduction 1: a role widened after approval does not widen
    // the certificate, and the snapshot is covered by the content hash.
    #[test]
    fn role_widened_after_approval_does_not_widen_the_certificate() {
        let r = approved_hotfix();
        let mut wider = hotfix_admin();
        wider.logins.insert(Principal::parse("postgres").unwrap());
        wider
            .extensions
            .insert(crate::cert_options::Extension::PermitAgentForwarding);
        wider.cert_ttl = d("4h");
        let s = r
            .certificate_scope(Some(&wider), &alice(), subject(), &ctx(), t0())
            .unwrap();
        assert_eq!(s.principals, hotfix_admin().logins);
        assert!(s.extensions.is_empty());
        assert_eq!(s.cert_ttl, d("10m"));
        let mut tampered = r.clone();
        if let Some(g) = &mut tampered.grant {
            g.principals.insert(Principal::parse("postgres").unwrap());
        }
        assert_eq!(
            tampered
                .certificate_scope(Some(&wider), &alice(), subject(), &ctx(), t0())
                .unwrap_err()
                .code(),
            "content_changed"
        );
    }

    // issue 11, reproduction 2: an approver moved out of the stage's group no
    // longer counts; the request goes back to pending.
    #[test]
    fn approver_moved_out_of_stage_group_voids_the_approval() {
        let role = hotfix_admin();
        let mut r = approved_hotfix();
        assert_eq!(r.approvals[0].group.as_str(), "sre-leads");
        let mut current = ctx().current.clone();
        current.insert(bob().identity, groups(&["engineers"]));
        let people = People::default();
        let moved = Approvers {
            people: &people,
            current: &current,
        };
        let e = r
            .certificate_scope(Some(&role), &alice(), subject(), &moved, t0())
            .unwrap_err();
        assert_eq!(e.code(), "needs_reapproval");
        assert!(
            e.to_string()
                .contains("bob is no longer a member of sre-leads")
        );
        let found = r.revalidate(&role, &moved, t0());
        assert_eq!(found.voided.len(), 1);
        assert_eq!(r.state, RequestState::Pending);
        assert_eq!(r.window, None);
        assert_eq!(r.open_stage(&role), Some((0, 1)));
    }

    // issue 11: a stage's count raised, a stage reordered or removed, voids
    // the approvals recorded for it.
    #[test]
    fn changed_reordered_or_removed_stage_voids_its_approvals() {
        let role = hotfix_admin();
        let check = |changed: Role, voided: usize| {
            let mut r = approved_hotfix();
            let found = r.revalidate(&changed, &ctx(), t0());
            assert_eq!(found.voided.len(), voided, "{:?}", changed.stages);
            assert_eq!(r.state, RequestState::Pending);
        };
        let mut raised = role.clone();
        raised.stages[0].approvals = 2;
        check(raised, 1);
        let mut reordered = role.clone();
        reordered.stages.reverse();
        check(reordered, 2);
        let mut removed = role.clone();
        removed.stages.truncate(1);
        removed.stages.push(ApprovalStage {
            group: GroupName::parse("directors").unwrap(),
            approvals: 1,
        });
        check(removed, 1);
        let mut unchanged = approved_hotfix();
        assert!(unchanged.revalidate(&role, &ctx(), t0()).is_empty());
        assert_eq!(unchanged.state, RequestState::Approved);
    }

    // issue 11, reproduction 3: with host-scoped principals, a host in two
    // host groups is refused at submission naming the groups.
    #[test]
    fn host_in_two_host_groups_is_refused_naming_them() {
        let mut role = hotfix_admin();
        let group = |name: &str, pattern: &str| crate::role::HostGroup {
            name: GroupName::parse(name).unwrap(),
            patterns: vec![HostPattern::parse(pattern).unwrap()],
        };
        role.host_scope = Some(vec![
            group("web", "web-*.payments.internal"),
            group("pay", "*.payments.internal"),
        ]);
        role.hosts = vec![
            HostPattern::parse("web-*.payments.internal").unwrap(),
            HostPattern::parse("*.payments.internal").unwrap(),
        ];
        let policy = Policy::new([role]).unwrap();
        let e = policy
            .check_request(
                &alice(),
                &input("hotfix-admin", &["web-1.payments.internal"], "1h"),
                t0(),
            )
            .unwrap_err();
        assert_eq!(e.code(), "host_in_several_groups");
        assert!(e.to_string().contains("web, pay") || e.to_string().contains("pay, web"));
        let ok = policy
            .check_request(
                &alice(),
                &input("hotfix-admin", &["db-1.payments.internal"], "1h"),
                t0(),
            )
            .unwrap();
        let names: Vec<_> = ok.grant.principals.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["pay:root"]);
    }

    /// One step of the property test.
    #[derive(Debug, Clone)]
    enum Action {
        Approve { who: usize, shorten: bool },
        Deny { who: usize },
        Cancel { who: usize },
        Revoke { who: usize },
        Wait { minutes: i64 },
        Issue { who: usize },
        OnCall,
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            (0usize..6, any::<bool>()).prop_map(|(who, shorten)| Action::Approve { who, shorten }),
            (0usize..6).prop_map(|who| Action::Deny { who }),
            (0usize..6).prop_map(|who| Action::Cancel { who }),
            (0usize..6).prop_map(|who| Action::Revoke { who }),
            (1i64..600).prop_map(|minutes| Action::Wait { minutes }),
            (0usize..6).prop_map(|who| Action::Issue { who }),
            Just(Action::OnCall),
        ]
    }

    fn cast() -> Vec<User> {
        vec![
            alice(),
            bob(),
            carol(),
            user("erin", &["sre-leads", "managers"]),
            user("eve", &["engineers"]),
            user("alice", &["engineers", "sre-leads", "managers"]),
        ]
    }

    proptest! {
        /// No sequence of actions yields a certificate scope without an approval that
        /// satisfies the policy at signing time, for the requester, inside the window.
        #[test]
        fn no_certificate_without_a_satisfying_approval(
            role_pick in 0usize..3,
            actions in proptest::collection::vec(action(), 0..30),
        ) {
            // Role 2: hotfix-admin with an on-call rule (issue 17).
            let role = match role_pick {
                0 => hotfix_admin(),
                1 => read_only_debug(),
                _ => Role {
                    on_call: Some(crate::oncall::OnCallRule {
                        source: "pagerduty:pd:PSCHED1".into(),
                        max_duration: d("1h"),
                    }),
                    ..hotfix_admin()
                },
            };
            let duration = ["2h", "3h", "1h"][role_pick];
            let mut r = submit(input(role.name.as_str(), &["web-1"], duration));
            let people = cast();
            let mut now = t0();
            for a in actions {
                match a {
                    Action::Approve { who, shorten } => {
                        let n = Narrowing { duration: shorten.then(|| d("30m")), hosts: None };
                        let _ = r.approve(&role, &people[who], n, &ctx(), now);
                    }
                    Action::Deny { who } => { let _ = r.deny(&role, &people[who], &People::default(), "no", now); }
                    Action::Cancel { who } => { let _ = r.cancel(&people[who].identity, now); }
                    Action::Revoke { who } => { let _ = r.revoke(&people[who].identity, "", now); }
                    Action::Wait { minutes } => now += TimeDelta::minutes(minutes),
                    Action::OnCall => { let _ = r.approve_on_call(&role, "pagerduty oncall user=P1", now); }
                    Action::Issue { who } => {
                        let caller = &people[who];
                        if let Ok(scope) = r.certificate_scope(Some(&role), caller, subject(), &ctx(), now) {
                            prop_assert_eq!(&caller.identity, &r.requester);
                            prop_assert_eq!(r.state, RequestState::Approved);
                            let w = r.window.unwrap();
                            prop_assert!(w.start <= now && now < w.end);
                            prop_assert!(scope.window_end <= w.end);
                            prop_assert!(w.end - w.start <= TimeDelta::from_std(role.max_duration.get()).unwrap());
                            match r.path {
                                ApprovalPath::Stages => {
                                    // Every stage has enough distinct approvers from its group, none the requester.
                                    let mut seen = BTreeSet::new();
                                    for (i, stage) in role.stages.iter().enumerate() {
                                        let n = r.approvals.iter().filter(|a| a.stage == i && a.approver != r.requester && seen.insert(a.approver.clone())).count();
                                        prop_assert!(n as u32 >= stage.approvals);
                                        let ok = r.approvals.iter().filter(|a| a.stage == i).all(|a| people.iter().any(|p| p.identity == a.approver && p.in_group(&stage.group)));
                                        prop_assert!(ok);
                                    }
                                }
                                ApprovalPath::Auto => {
                                    let rule = role.auto_approve.as_ref().unwrap();
                                    prop_assert!(caller.in_group(&rule.group) && r.duration <= rule.max_duration);
                                }
                                ApprovalPath::BreakGlass => prop_assert!(false, "no break-glass in these roles"),
                                ApprovalPath::OnCall => {
                                    // Only the on-call rule of the role, within its maximum,
                                    // for exactly the content it approved, with no approvals.
                                    let rule = role.on_call.as_ref().unwrap();
                                    prop_assert!(r.duration <= rule.max_duration);
                                    let a = r.automated.as_ref().unwrap();
                                    prop_assert_eq!(&a.content_hash, &r.content_hash());
                                    prop_assert_eq!(&a.source, &rule.source);
                                    prop_assert!(r.approvals.is_empty());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn policy_validation() {
        let mut r = hotfix_admin();
        r.logins.clear();
        assert!(matches!(
            r.validate(),
            Err(crate::role::RoleError::NoLogins(_))
        ));
        let mut r = hotfix_admin();
        r.stages.clear();
        assert!(matches!(
            r.validate(),
            Err(crate::role::RoleError::NoApprovalPath(_))
        ));
        let mut r = hotfix_admin();
        r.default_duration = d("5h");
        assert!(matches!(
            r.validate(),
            Err(crate::role::RoleError::DurationAboveMax { .. })
        ));
        let mut r = hotfix_admin();
        r.stages[0].approvals = 0;
        assert!(matches!(
            r.validate(),
            Err(crate::role::RoleError::EmptyStage(_))
        ));
        let _ = PolicyRefusal::NoHosts;
    }
}
