//! The earlier approvers of a request as they are now: the groups each one
//! is a member of at decision and issuance time, for `AccessRequest::revalidate`.
//!
//! Groups are re-read the way a decision reads them: local accounts from the
//! configuration; OpenID Connect users from their most recent login (the
//! groups claim of that login; when none is stored, the group the approval
//! recorded), and nobody at an issuer that is no longer configured.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Connection;
use tpa_core::{AccessRequest, GroupName, Identity, User};

use crate::identity::Identities;
use crate::store::{StoreError, auth_tokens};

/// Current groups of every approver of `r`, by identity. An approver whose
/// account is gone is missing from the map (a member of nothing).
pub fn current(
    conn: &Connection,
    identities: &Identities,
    r: &AccessRequest,
) -> Result<BTreeMap<Identity, BTreeSet<GroupName>>, StoreError> {
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
        let Some(fresh) = identities.refresh(&probe) else {
            continue;
        };
        let groups = if fresh.identity.issuer() == tpa_core::identity::LOCAL_ISSUER {
            fresh.groups
        } else {
            match auth_tokens::latest_groups(conn, a.approver.issuer(), a.approver.subject())? {
                Some(json) => serde_json::from_str::<Vec<String>>(&json)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|g| GroupName::parse(g).ok())
                    .collect(),
                None => BTreeSet::from([a.group.clone()]),
            }
        };
        out.insert(a.approver.clone(), groups);
    }
    Ok(out)
}
