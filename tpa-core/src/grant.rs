//! The grant snapshot: exactly what a certificate for a request may carry,
//! fixed when the request is submitted and covered by its content hash.
//!
//! Approvers approve this snapshot, not the role's name. Every certificate is
//! built from the snapshot intersected with the role as configured at signing
//! time ([`Grant::within`]): an administrator who narrows or removes a role
//! takes effect at once, and one who widens a role never widens a grant that
//! already exists.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::cert_options::{CriticalOptions, Extensions};
use crate::duration::HumanDuration;
use crate::identifiers::Principal;
use crate::identifiers::RoleName;

/// What a certificate for one request may carry. Hosts and the window length
/// live on the request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The principals (host-scoped ones included), never empty.
    pub principals: BTreeSet<Principal>,
    /// The extensions.
    pub extensions: Extensions,
    /// force-command / source-address.
    pub critical_options: CriticalOptions,
    /// The longest life of one certificate.
    pub cert_ttl: HumanDuration,
}

/// Why the role as configured now cannot be reconciled with a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantConflict {
    /// The role no longer grants any of the approved principals.
    #[error("role {0} no longer grants any of the approved logins")]
    NoPrincipals(String),
    /// The role now forces another command (or source address) than the one approved.
    #[error("role {role} now sets {option} differently from what was approved")]
    OptionChanged {
        /// The role.
        role: String,
        /// `force-command` or `source-address`.
        option: &'static str,
    },
}

pub(crate) fn field(hasher: &mut Sha256, value: &[u8]) {
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value);
}

/// Of two settings of one critical option, the one that is not wider: equal
/// values agree, one missing means the other restricts, two different values
/// cannot both hold.
fn stricter<T: Clone + PartialEq>(
    approved: &Option<T>,
    now: &Option<T>,
    role: &RoleName,
    option: &'static str,
) -> Result<Option<T>, GrantConflict> {
    match (approved, now) {
        (Some(a), Some(b)) if a != b => Err(GrantConflict::OptionChanged {
            role: role.to_string(),
            option,
        }),
        (Some(a), _) => Ok(Some(a.clone())),
        (None, b) => Ok(b.clone()),
    }
}

impl Grant {
    /// This grant intersected with `now`, what role `role` grants as
    /// configured now for the approved hosts (`Role::grant`): fewer principals
    /// or extensions, a shorter certificate TTL and an added critical option
    /// take effect; nothing is ever added.
    pub fn within(&self, now: &Grant, role: &RoleName) -> Result<Grant, GrantConflict> {
        let principals: BTreeSet<Principal> = self
            .principals
            .intersection(&now.principals)
            .cloned()
            .collect();
        if principals.is_empty() {
            return Err(GrantConflict::NoPrincipals(role.to_string()));
        }
        Ok(Grant {
            principals,
            extensions: self
                .extensions
                .intersection(&now.extensions)
                .copied()
                .collect(),
            critical_options: CriticalOptions {
                force_command: stricter(
                    &self.critical_options.force_command,
                    &now.critical_options.force_command,
                    role,
                    "force-command",
                )?,
                source_address: stricter(
                    &self.critical_options.source_address,
                    &now.critical_options.source_address,
                    role,
                    "source-address",
                )?,
            },
            cert_ttl: self.cert_ttl.min(now.cert_ttl),
        })
    }

    /// Feeds every field into a content hash (length-prefixed).
    pub(crate) fn hash_into(&self, h: &mut Sha256) {
        field(h, (self.principals.len() as u64).to_be_bytes().as_slice());
        for p in &self.principals {
            field(h, p.as_str().as_bytes());
        }
        field(h, (self.extensions.len() as u64).to_be_bytes().as_slice());
        for e in &self.extensions {
            field(h, e.name().as_bytes());
        }
        let opts = &self.critical_options;
        field(
            h,
            opts.force_command
                .as_ref()
                .map_or("", |c| c.as_str())
                .as_bytes(),
        );
        field(h, &[u8::from(opts.force_command.is_some())]);
        let source = opts
            .source_address
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        field(h, source.as_bytes());
        field(h, self.cert_ttl.as_secs().to_be_bytes().as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert_options::{Extension, ForceCommand};
    use crate::host::HostName;
    use crate::request::tests::hotfix_admin;

    fn hosts() -> BTreeSet<HostName> {
        [HostName::parse("web-1").unwrap()].into()
    }

    // issue 11: a role widened after approval never widens the grant.
    #[test]
    fn within_never_adds_what_was_not_approved() {
        let role = hotfix_admin();
        let mut approved = role.grant(&hosts());
        approved.extensions.insert(Extension::PermitPty);
        let mut wider = role.clone();
        wider.logins.insert(Principal::parse("postgres").unwrap());
        wider.extensions.insert(Extension::PermitPty);
        wider.extensions.insert(Extension::PermitAgentForwarding);
        wider.cert_ttl = HumanDuration::parse("1h").unwrap();
        let got = approved
            .within(&wider.grant(&hosts()), &wider.name)
            .unwrap();
        assert_eq!(got, approved);
    }

    #[test]
    fn within_applies_narrowing_at_once() {
        let role = hotfix_admin();
        let mut approved = role.grant(&hosts());
        approved
            .principals
            .insert(Principal::parse("deploy").unwrap());
        approved.extensions.insert(Extension::PermitPty);
        let mut narrower = role.clone();
        narrower.cert_ttl = HumanDuration::parse("2m").unwrap();
        narrower.critical_options.force_command = Some(ForceCommand::parse("uptime").unwrap());
        let got = approved
            .within(&narrower.grant(&hosts()), &narrower.name)
            .unwrap();
        assert_eq!(got.principals, role.logins);
        assert!(got.extensions.is_empty());
        assert_eq!(got.cert_ttl, HumanDuration::parse("2m").unwrap());
        assert_eq!(
            got.critical_options.force_command.unwrap().as_str(),
            "uptime"
        );
        let mut other = narrower.clone();
        other.logins = [Principal::parse("nobody").unwrap()].into();
        assert!(matches!(
            approved.within(&other.grant(&hosts()), &other.name),
            Err(GrantConflict::NoPrincipals(_))
        ));
        let mut changed = narrower.clone();
        changed.critical_options.force_command = Some(ForceCommand::parse("ls").unwrap());
        let forced = approved
            .within(&narrower.grant(&hosts()), &narrower.name)
            .unwrap();
        assert!(matches!(
            forced.within(&changed.grant(&hosts()), &changed.name),
            Err(GrantConflict::OptionChanged { .. })
        ));
    }
}
