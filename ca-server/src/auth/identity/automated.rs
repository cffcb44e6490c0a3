//! The identity of the external policy hook when it approves a stage as an
//! "automated check" (`[policy_hook] approves_as`, issue 17): a pseudo-user
//! no person can log in as, a member of that one group only.

use tpa_core::{GroupName, Identity, User, Username};

use crate::config::HOOK_USERNAME;

/// The issuer of the policy hook's identity when it approves a stage.
pub const HOOK_ISSUER: &str = "tpa:policy-hook";

/// The policy hook as an approver: identity `tpa:policy-hook#policy-hook`,
/// a member of `group` only.
pub fn hook_user(group: GroupName) -> Option<User> {
    let username = Username::parse(HOOK_USERNAME).ok()?;
    Some(User {
        identity: Identity::new(HOOK_ISSUER, HOOK_USERNAME).ok()?,
        username,
        display_name: "policy hook (automated check)".to_owned(),
        groups: [group].into(),
    })
}
