//! Roles and the policy that governs requests for them.
//!
//! A role says which logins a certificate may carry, which hosts it may reach,
//! for how long, with which extensions and critical options, who may ask for it
//! and who must approve. Refusals are values ([`PolicyRefusal`]), not panics.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::cert_options::{CriticalOptions, Extensions};
use crate::duration::HumanDuration;
use crate::grant::Grant;
use crate::host::{HostName, HostPattern};
use crate::identifiers::{Principal, RoleName, shown};
use crate::identity::{GroupName, People, User};

use crate::text::{FreeText, TextError, TextField};
pub use crate::text::{MAX_REASON, MAX_TICKET};

/// One approval stage: `approvals` distinct members of `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalStage {
    /// Who may approve at this stage.
    pub group: GroupName,
    /// How many distinct approvers this stage needs (at least 1).
    pub approvals: u32,
}

impl ApprovalStage {
    /// A stable hash of the stage's definition (group and count). An approval
    /// records it; when the stage at that position no longer hashes the same
    /// (changed, reordered or removed), the approval no longer counts.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        crate::grant::field(&mut h, b"tpa-stage-v1");
        crate::grant::field(&mut h, self.group.as_str().as_bytes());
        crate::grant::field(&mut h, &self.approvals.to_be_bytes());
        hex::encode(&h.finalize()[..16])
    }
}

/// Requests by members of `group` for at most `max_duration` are approved at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoApprove {
    /// Requester group.
    pub group: GroupName,
    /// Longest auto-approved duration.
    pub max_duration: HumanDuration,
}

/// Self-approval in an emergency, with an incident id and a short maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    /// Longest break-glass duration.
    pub max_duration: HumanDuration,
}

/// A ticket id pattern: a regular expression the whole ticket must match.
#[derive(Debug, Clone)]
pub struct TicketPattern {
    source: String,
    regex: regex_lite::Regex,
}

impl TicketPattern {
    /// Compiles a pattern; it is anchored at both ends.
    pub fn parse(source: &str) -> Result<Self, String> {
        let regex =
            regex_lite::Regex::new(&format!("^(?:{source})$")).map_err(|e| e.to_string())?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether `ticket` matches.
    pub fn matches(&self, ticket: &str) -> bool {
        self.regex.is_match(ticket)
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for TicketPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for TicketPattern {}

/// A role, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Name.
    pub name: RoleName,
    /// For people.
    pub description: String,
    /// Certificate principals.
    pub logins: BTreeSet<Principal>,
    /// Hosts the role may reach.
    pub hosts: Vec<HostPattern>,
    /// Longest access window.
    pub max_duration: HumanDuration,
    /// Window when the request names none.
    pub default_duration: HumanDuration,
    /// Longest life of one certificate inside the window.
    pub cert_ttl: HumanDuration,
    /// Granted extensions (none by default).
    pub extensions: Extensions,
    /// force-command / source-address.
    pub critical_options: CriticalOptions,
    /// Groups whose members may request the role.
    pub requestable_by: BTreeSet<GroupName>,
    /// Ordered approval stages.
    pub stages: Vec<ApprovalStage>,
    /// Optional auto-approval rule.
    pub auto_approve: Option<AutoApprove>,
    /// Optional break-glass rule.
    pub break_glass: Option<BreakGlass>,
    /// Optional on-call rule: the requester on call now is approved at once.
    pub on_call: Option<crate::oncall::OnCallRule>,
    /// Whether a reason is required.
    pub require_reason: bool,
    /// Optional ticket pattern (a ticket is then required).
    pub ticket_pattern: Option<TicketPattern>,
    /// With host-scoped principals: the role's named host groups. Certificates
    /// then carry `<group>:<login>` for each group that covers an approved host,
    /// so a certificate approved for one group is useless on another's hosts.
    pub host_scope: Option<Vec<HostGroup>>,
}

/// A named group of host patterns (`[host_groups]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostGroup {
    /// The group's name (the prefix of host-scoped principals).
    pub name: GroupName,
    /// Its host patterns.
    pub patterns: Vec<HostPattern>,
}

impl HostGroup {
    /// Whether the group covers `host`.
    pub fn covers(&self, host: &HostName) -> bool {
        self.patterns.iter().any(|p| p.matches(host))
    }
}

/// Why a role definition is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// A role must name at least one login.
    #[error("role {0}: logins must not be empty")]
    NoLogins(RoleName),
    /// A role must name at least one host pattern.
    #[error("role {0}: hosts must not be empty")]
    NoHosts(RoleName),
    /// Nobody could ever request the role.
    #[error("role {0}: requestable_by must name at least one group")]
    NotRequestable(RoleName),
    /// Nobody could ever approve a request.
    #[error("role {0}: needs at least one approval stage or an auto_approve rule")]
    NoApprovalPath(RoleName),
    /// A stage needs at least one approval.
    #[error("role {0}: every approval stage needs approvals >= 1")]
    EmptyStage(RoleName),
    /// An on-call rule needs stages to fall back to when the requester is
    /// not on call or the provider does not answer.
    #[error("role {0}: on_call needs approval stages to fall back to")]
    OnCallWithoutStages(RoleName),
    /// default_duration > max_duration, or a rule's maximum above the role's.
    #[error("role {role}: {what} ({value}) exceeds max_duration ({max})")]
    DurationAboveMax {
        /// The role.
        role: RoleName,
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: HumanDuration,
        /// The role's maximum.
        max: HumanDuration,
    },
}

impl Role {
    /// Checks the role's internal consistency.
    pub fn validate(&self) -> Result<(), RoleError> {
        let role = || self.name.clone();
        if self.logins.is_empty() {
            return Err(RoleError::NoLogins(role()));
        }
        if self.hosts.is_empty() {
            return Err(RoleError::NoHosts(role()));
        }
        if self.requestable_by.is_empty() {
            return Err(RoleError::NotRequestable(role()));
        }
        if self.stages.is_empty() && self.auto_approve.is_none() {
            return Err(RoleError::NoApprovalPath(role()));
        }
        if self.stages.iter().any(|s| s.approvals == 0) {
            return Err(RoleError::EmptyStage(role()));
        }
        if self.on_call.is_some() && self.stages.is_empty() {
            return Err(RoleError::OnCallWithoutStages(role()));
        }
        let above = |what, value: HumanDuration| {
            (value > self.max_duration).then(|| RoleError::DurationAboveMax {
                role: role(),
                what,
                value,
                max: self.max_duration,
            })
        };
        if let Some(e) = above("default_duration", self.default_duration)
            .or_else(|| {
                self.auto_approve
                    .as_ref()
                    .and_then(|a| above("auto_approve.max_duration", a.max_duration))
            })
            .or_else(|| {
                self.break_glass
                    .as_ref()
                    .and_then(|b| above("break_glass.max_duration", b.max_duration))
            })
            .or_else(|| {
                self.on_call
                    .as_ref()
                    .and_then(|o| above("on_call.max_duration", o.max_duration))
            })
        {
            return Err(e);
        }
        Ok(())
    }

    /// Whether `user` may request this role.
    pub fn requestable_by(&self, user: &User) -> bool {
        self.requestable_by.iter().any(|g| user.in_group(g))
    }

    /// Whether the role covers `host`.
    pub fn covers(&self, host: &HostName) -> bool {
        self.hosts.iter().any(|p| p.matches(host))
    }

    /// The host groups of the role that cover `host` (empty without
    /// host-scoped principals).
    pub fn host_groups_of(&self, host: &HostName) -> Vec<&GroupName> {
        self.host_scope
            .iter()
            .flatten()
            .filter(|g| g.covers(host))
            .map(|g| &g.name)
            .collect()
    }

    /// The requested hosts, canonical: at least one, each covered by this
    /// role and in at most one of its host groups.
    fn requested_hosts(
        &self,
        name: &RoleName,
        texts: &[String],
    ) -> Result<BTreeSet<HostName>, PolicyRefusal> {
        if texts.is_empty() {
            return Err(PolicyRefusal::NoHosts);
        }
        let mut hosts = BTreeSet::new();
        for text in texts {
            let host =
                HostName::canonical(text).map_err(|e| PolicyRefusal::BadHost(e.to_string()))?;
            if !self.covers(&host) {
                let allowed = self
                    .hosts
                    .iter()
                    .map(HostPattern::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(PolicyRefusal::HostNotInRole {
                    host,
                    role: name.clone(),
                    allowed,
                });
            }
            let groups = self.host_groups_of(&host);
            if groups.len() > 1 {
                return Err(PolicyRefusal::HostInSeveralGroups {
                    groups: groups
                        .iter()
                        .map(|g| g.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    host,
                    role: name.clone(),
                });
            }
            hosts.insert(host);
        }
        Ok(hosts)
    }

    /// The request's ticket (empty counts as none), matching the role's
    /// `ticket_pattern` when it has one.
    fn requested_ticket(
        &self,
        name: &RoleName,
        text: Option<&str>,
    ) -> Result<Option<FreeText>, PolicyRefusal> {
        let ticket = text
            .map(|t| FreeText::parse(TextField::Ticket, t))
            .transpose()
            .map_err(PolicyRefusal::BadText)?
            .filter(|t| !t.is_empty());
        if let Some(pattern) = &self.ticket_pattern {
            match ticket.as_ref().map(FreeText::as_str) {
                None => {
                    return Err(PolicyRefusal::TicketRequired {
                        role: name.clone(),
                        pattern: pattern.as_str().to_owned(),
                    });
                }
                Some(t) if !pattern.matches(t) => {
                    return Err(PolicyRefusal::TicketMismatch {
                        ticket: shown(t),
                        role: name.clone(),
                        pattern: pattern.as_str().to_owned(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(ticket)
    }

    /// The grant of this role for `hosts` as configured now.
    pub fn grant(&self, hosts: &BTreeSet<HostName>) -> Grant {
        Grant {
            principals: self.principals_for(hosts),
            extensions: self.extensions.clone(),
            critical_options: self.critical_options.clone(),
            cert_ttl: self.cert_ttl,
        }
    }

    /// The principals a certificate for `hosts` carries: the role's logins, or
    /// with host-scoped principals `<group>:<login>` for every group of the
    /// role that covers at least one of `hosts`.
    pub fn principals_for(&self, hosts: &BTreeSet<HostName>) -> BTreeSet<Principal> {
        match &self.host_scope {
            None => self.logins.clone(),
            Some(groups) => groups
                .iter()
                .filter(|g| hosts.iter().any(|h| g.covers(h)))
                .flat_map(|g| {
                    self.logins
                        .iter()
                        .map(move |l| Principal::scoped(&g.name, l))
                })
                .collect(),
        }
    }
}

/// Why a request is refused by policy. Each has a stable code for the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// No such role.
    #[error("unknown role {name}; roles you may request: {available}")]
    UnknownRole {
        /// The name given, escaped.
        name: String,
        /// The roles the user may request.
        available: String,
    },
    /// The user is in none of the role's requestable_by groups.
    #[error("you may not request role {role}; roles you may request: {available}")]
    NotAllowed {
        /// The role.
        role: RoleName,
        /// The roles the user may request.
        available: String,
    },
    /// Longer than the role allows.
    #[error("duration {requested} exceeds the maximum {max} of role {role}")]
    DurationTooLong {
        /// The role.
        role: RoleName,
        /// What was asked.
        requested: HumanDuration,
        /// The maximum.
        max: HumanDuration,
    },
    /// The duration is not a positive duration.
    #[error("{0}")]
    BadDuration(String),
    /// No host named.
    #[error("name at least one host")]
    NoHosts,
    /// A host name that is not a host name.
    #[error("{0}")]
    BadHost(String),
    /// A host the role does not cover.
    #[error("host {host} is not covered by role {role} (allowed: {allowed})")]
    HostNotInRole {
        /// The host.
        host: HostName,
        /// The role.
        role: RoleName,
        /// The role's host patterns.
        allowed: String,
    },
    /// Reason missing.
    #[error("role {0} requires a reason")]
    ReasonRequired(RoleName),
    /// Reason or ticket refused by the free-text rule (length, control,
    /// format or bidi characters).
    #[error("{0}")]
    BadText(TextError),
    /// Ticket missing.
    #[error("role {role} requires a ticket matching {pattern}")]
    TicketRequired {
        /// The role.
        role: RoleName,
        /// The pattern.
        pattern: String,
    },
    /// Ticket not matching.
    #[error("ticket {ticket} does not match the pattern {pattern} of role {role}")]
    TicketMismatch {
        /// The ticket, escaped.
        ticket: String,
        /// The role.
        role: RoleName,
        /// The pattern.
        pattern: String,
    },
    /// Scheduled start in the past or too far ahead.
    #[error("the scheduled start must be in the future and at most 30 days ahead")]
    BadStart,
    /// Break-glass asked for a role without it.
    #[error("role {0} has no break-glass rule")]
    NoBreakGlass(RoleName),
    /// Break-glass without incident id.
    #[error("break-glass requires an incident id (--ticket)")]
    IncidentRequired,
    /// With host-scoped principals, a host in more than one host group would
    /// carry the principals of all of them.
    #[error(
        "host {host} matches more than one host group of role {role} ({groups}); the operator must make the host groups disjoint"
    )]
    HostInSeveralGroups {
        /// The host.
        host: HostName,
        /// The role.
        role: RoleName,
        /// The groups, comma-separated.
        groups: String,
    },
}

impl PolicyRefusal {
    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyRefusal::UnknownRole { .. } => "unknown_role",
            PolicyRefusal::NotAllowed { .. } => "role_not_allowed",
            PolicyRefusal::DurationTooLong { .. } => "duration_too_long",
            PolicyRefusal::BadDuration(_) => "bad_duration",
            PolicyRefusal::NoHosts | PolicyRefusal::BadHost(_) => "bad_host",
            PolicyRefusal::HostNotInRole { .. } => "host_not_in_role",
            PolicyRefusal::ReasonRequired(_) => "reason_required",
            PolicyRefusal::BadText(e) => e.code(),
            PolicyRefusal::TicketRequired { .. } | PolicyRefusal::IncidentRequired => {
                "ticket_required"
            }
            PolicyRefusal::TicketMismatch { .. } => "ticket_mismatch",
            PolicyRefusal::BadStart => "bad_start",
            PolicyRefusal::NoBreakGlass(_) => "no_break_glass",
            PolicyRefusal::HostInSeveralGroups { .. } => "host_in_several_groups",
        }
    }
}

/// The roles in force.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: BTreeMap<RoleName, Role>,
    people: People,
}

/// A request as typed, before any check.
#[derive(Debug, Clone, Default)]
pub struct RequestInput {
    /// Role name.
    pub role: String,
    /// Host names.
    pub hosts: Vec<String>,
    /// Duration such as `2h`; the role default when absent.
    pub duration: Option<String>,
    /// Why.
    pub reason: String,
    /// Ticket or incident id.
    pub ticket: Option<String>,
    /// Scheduled window start.
    pub start: Option<DateTime<Utc>>,
    /// Ask for break-glass self-approval.
    pub break_glass: bool,
}

/// A request that passed every policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRequest {
    /// The role.
    pub role: RoleName,
    /// The hosts, each covered by the role.
    pub hosts: BTreeSet<HostName>,
    /// The window length.
    pub duration: HumanDuration,
    /// Why (trimmed).
    pub reason: String,
    /// Ticket or incident id.
    pub ticket: Option<String>,
    /// Scheduled start.
    pub start: Option<DateTime<Utc>>,
    /// How it gets approved.
    pub path: ApprovalPath,
    /// The exact certificate scope, as the role grants it now.
    pub grant: Grant,
}

/// How a checked request gets approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalPath {
    /// The auto-approve rule applies: approved on submission.
    Auto,
    /// The approval stages apply.
    Stages,
    /// Break-glass: self-approved, every approver notified, review required.
    BreakGlass,
    /// Approved at once because the requester was on call (the role's
    /// on-call rule; see [`crate::oncall`]). Submissions never start here: a
    /// request of the stages path moves to it.
    OnCall,
}

impl ApprovalPath {
    /// The wire and audit name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalPath::Auto => "auto",
            ApprovalPath::Stages => "stages",
            ApprovalPath::BreakGlass => "break_glass",
            ApprovalPath::OnCall => "on_call",
        }
    }
}

impl Policy {
    /// A policy from validated roles.
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Result<Self, RoleError> {
        let mut map = BTreeMap::new();
        for role in roles {
            role.validate()?;
            map.insert(role.name.clone(), role);
        }
        Ok(Self {
            roles: map,
            people: People::default(),
        })
    }

    /// The same policy with `people` as the person rule (identity links).
    pub fn with_people(mut self, people: People) -> Self {
        self.people = people;
        self
    }

    /// Who is one person (separation of duties, `revoke user`).
    pub fn people(&self) -> &People {
        &self.people
    }

    /// All roles.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// A role by name.
    pub fn role(&self, name: &RoleName) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Names of the roles `user` may request, comma-separated (or "none").
    pub fn requestable_names(&self, user: &User) -> String {
        let names: Vec<&str> = self
            .roles
            .values()
            .filter(|r| r.requestable_by(user))
            .map(|r| r.name.as_str())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// Checks a request against the role; the first problem wins.
    pub fn check_request(
        &self,
        requester: &User,
        input: &RequestInput,
        now: DateTime<Utc>,
    ) -> Result<CheckedRequest, PolicyRefusal> {
        let (name, role) = self.requested_role(requester, &input.role)?;
        let duration = match &input.duration {
            Some(text) => {
                HumanDuration::parse(text).map_err(|e| PolicyRefusal::BadDuration(e.to_string()))?
            }
            None => role.default_duration,
        };
        if duration > role.max_duration {
            return Err(PolicyRefusal::DurationTooLong {
                role: name,
                requested: duration,
                max: role.max_duration,
            });
        }
        let hosts = role.requested_hosts(&name, &input.hosts)?;
        let reason = FreeText::parse(TextField::Reason, &input.reason)
            .map_err(PolicyRefusal::BadText)?
            .into_string();
        if reason.is_empty() && (role.require_reason || input.break_glass) {
            return Err(PolicyRefusal::ReasonRequired(name));
        }
        let ticket = role.requested_ticket(&name, input.ticket.as_deref())?;
        let ticket = ticket.as_ref().map(FreeText::as_str);
        if let Some(start) = input.start
            && (start <= now || start > now + chrono::TimeDelta::days(30))
        {
            return Err(PolicyRefusal::BadStart);
        }
        let path =
            self.approval_path(requester, role, &name, input.break_glass, ticket, duration)?;
        let grant = role.grant(&hosts);
        Ok(CheckedRequest {
            role: name,
            hosts,
            duration,
            reason,
            ticket: ticket.map(str::to_owned),
            start: input.start,
            path,
            grant,
        })
    }

    /// The role named by `text`, if it exists and `requester` may ask for it.
    fn requested_role(
        &self,
        requester: &User,
        text: &str,
    ) -> Result<(RoleName, &Role), PolicyRefusal> {
        let unknown = || PolicyRefusal::UnknownRole {
            name: shown(text),
            available: self.requestable_names(requester),
        };
        let name = RoleName::parse(text).map_err(|_| unknown())?;
        let role = self.roles.get(&name).ok_or_else(unknown)?;
        if !role.requestable_by(requester) {
            return Err(PolicyRefusal::NotAllowed {
                role: name,
                available: self.requestable_names(requester),
            });
        }
        Ok((name, role))
    }

    /// How the request will be approved: break-glass (its own limits and an
    /// incident ticket), automatically, or by the role's stages; a role
    /// whose only rule does not apply refuses.
    fn approval_path(
        &self,
        requester: &User,
        role: &Role,
        name: &RoleName,
        break_glass: bool,
        ticket: Option<&str>,
        duration: HumanDuration,
    ) -> Result<ApprovalPath, PolicyRefusal> {
        if break_glass {
            let rule = role
                .break_glass
                .as_ref()
                .ok_or_else(|| PolicyRefusal::NoBreakGlass(name.clone()))?;
            if ticket.is_none() {
                return Err(PolicyRefusal::IncidentRequired);
            }
            if duration > rule.max_duration {
                return Err(PolicyRefusal::DurationTooLong {
                    role: name.clone(),
                    requested: duration,
                    max: rule.max_duration,
                });
            }
            return Ok(ApprovalPath::BreakGlass);
        }
        if role
            .auto_approve
            .as_ref()
            .is_some_and(|a| requester.in_group(&a.group) && duration <= a.max_duration)
        {
            return Ok(ApprovalPath::Auto);
        }
        if !role.stages.is_empty() {
            return Ok(ApprovalPath::Stages);
        }
        // Only the auto rule could approve, and it does not apply.
        Err(match &role.auto_approve {
            Some(a) if requester.in_group(&a.group) => PolicyRefusal::DurationTooLong {
                role: name.clone(),
                requested: duration,
                max: a.max_duration,
            },
            _ => PolicyRefusal::NotAllowed {
                role: name.clone(),
                available: self.requestable_names(requester),
            },
        })
    }
}
