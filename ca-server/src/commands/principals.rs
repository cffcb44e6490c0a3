//! `tpa-ca principals`: what a host of one host group puts in its
//! `AuthorizedPrincipalsFile`, for roles with host-scoped principals.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use tpa_core::{GroupName, Principal};

use crate::config::Config;

/// The host-scoped principals of `group` (for `login` only, when given).
pub fn principals_for_group(
    config: &Config,
    group: &str,
    login: Option<&str>,
) -> anyhow::Result<BTreeSet<String>> {
    let group = GroupName::parse(group)?;
    let login = login.map(Principal::parse).transpose()?;
    let mut known = BTreeSet::new();
    let mut out = BTreeSet::new();
    for role in config.policy.roles() {
        let Some(scope) = &role.host_scope else {
            continue;
        };
        for g in scope {
            known.insert(g.name.to_string());
            if g.name != group {
                continue;
            }
            for l in &role.logins {
                if login.as_ref().is_none_or(|wanted| wanted == l) {
                    out.insert(Principal::scoped(&g.name, l).to_string());
                }
            }
        }
    }
    if !known.contains(group.as_str()) {
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.into_iter().collect::<Vec<_>>().join(", ")
        };
        bail!(
            "no role with host_scoped_principals uses host group {group}; groups that do: {known}"
        );
    }
    Ok(out)
}

pub(super) fn run(config: &Path, group: &str, login: Option<&str>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let principals = principals_for_group(&config, group, login)?;
    if principals.is_empty() {
        bail!(
            "no role grants login {} on host group {group}",
            login.unwrap_or("?")
        );
    }
    for p in principals {
        println!("{p}");
    }
    Ok(ExitCode::SUCCESS)
}
