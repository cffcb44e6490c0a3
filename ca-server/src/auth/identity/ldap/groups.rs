//! A user's directory groups: from `memberOf` or a group search, groups in
//! groups followed to `nested_depth` (AD resolves the whole chain itself
//! with `LDAP_MATCHING_RULE_IN_CHAIN`), then mapped to TPA groups.

use std::collections::{BTreeSet, VecDeque};

use ldap3::{Scope, SearchEntry};
use tpa_core::GroupName;

use super::LdapError;
use super::conn::{Conn, within};
use super::entry::UserEntry;
use super::filter::{filter_value, first_rdn_value};
use crate::config::{GroupMembership, LdapConfig, LdapKind};

/// More groups than this for one user is refused rather than followed.
const MAX_GROUPS: usize = 1000;

/// One directory group of a user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirectoryGroup {
    /// Its DN.
    pub dn: String,
    /// Its name (`group_name_attribute`, else the first RDN's value).
    pub name: Option<String>,
}

/// The groups of `user`, nested ones included.
pub(super) async fn of_user(
    conn: &mut Conn,
    config: &LdapConfig,
    user: &UserEntry,
    username: &str,
) -> Result<Vec<DirectoryGroup>, LdapError> {
    let direct = match config.group_membership {
        GroupMembership::MemberOf => user
            .member_of
            .iter()
            .map(|dn| DirectoryGroup {
                name: first_rdn_value(dn, &config.group_name_attribute),
                dn: dn.clone(),
            })
            .collect(),
        GroupMembership::Search => {
            let filter = super::filter::fill(
                &config.group_filter,
                &[("dn", &user.dn), ("username", username)],
                filter_value,
            );
            search_groups(conn, config, &filter).await?
        }
    };
    // AD's in-chain rule already returned every level.
    let depth = if config.kind == LdapKind::ActiveDirectory
        && config.group_membership == GroupMembership::Search
    {
        0
    } else {
        config.nested_depth
    };
    let mut found: BTreeSet<DirectoryGroup> = BTreeSet::new();
    let mut queue: VecDeque<(DirectoryGroup, u8)> = direct.into_iter().map(|g| (g, 0)).collect();
    while let Some((group, level)) = queue.pop_front() {
        if found.iter().any(|g| g.dn.eq_ignore_ascii_case(&group.dn)) {
            continue;
        }
        if found.len() >= MAX_GROUPS {
            return Err(LdapError::Unusable(format!(
                "more than {MAX_GROUPS} groups: narrow group_base"
            )));
        }
        if level < depth {
            let filter = format!(
                "(|(member={dn})(uniqueMember={dn}))",
                dn = filter_value(&group.dn)
            );
            for parent in search_groups(conn, config, &filter).await? {
                queue.push_back((parent, level + 1));
            }
        }
        found.insert(group);
    }
    Ok(found.into_iter().collect())
}

async fn search_groups(
    conn: &mut Conn,
    config: &LdapConfig,
    filter: &str,
) -> Result<Vec<DirectoryGroup>, LdapError> {
    let attrs = vec![config.group_name_attribute.as_str()];
    let result = within(
        config.timeout,
        "searching groups",
        conn.ldap
            .search(&config.group_base, Scope::Subtree, filter, attrs),
    )
    .await?;
    super::check_result(&result.1, "searching groups")?;
    Ok(result
        .0
        .into_iter()
        .filter(|e| !is_reference(e))
        .map(SearchEntry::construct)
        .map(|e| DirectoryGroup {
            name: e
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&config.group_name_attribute))
                .and_then(|(_, v)| v.first().cloned())
                .or_else(|| first_rdn_value(&e.dn, &config.group_name_attribute)),
            dn: e.dn,
        })
        .collect())
}

/// A search continuation reference (a referral inside the results): never followed.
pub(super) fn is_reference(entry: &ldap3::ResultEntry) -> bool {
    entry.is_ref() || entry.is_intermediate()
}

/// The TPA groups of directory groups: with a `group_map`, the groups whose
/// name or DN (without case) is mapped; without one, the names that are
/// valid TPA group names.
pub fn mapped(config: &LdapConfig, groups: &[DirectoryGroup]) -> BTreeSet<GroupName> {
    groups
        .iter()
        .filter_map(|g| {
            if config.group_map.is_empty() {
                g.name.as_deref().and_then(|n| GroupName::parse(n).ok())
            } else {
                let by_name = g
                    .name
                    .as_deref()
                    .and_then(|n| config.group_map.get(&n.to_ascii_lowercase()));
                let by_dn = || config.group_map.get(&g.dn.to_ascii_lowercase());
                by_name.or_else(by_dn).cloned()
            }
        })
        .collect()
}
