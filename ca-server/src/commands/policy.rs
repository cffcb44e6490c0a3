//! `tpa-ca policy explain` and `tpa-ca policy test`: what the policy of a
//! configuration file answers for a user, a role, a host and a duration,
//! and a table of expected answers that a config repository's CI can gate
//! role changes on. Both call `workflow::explain::explain`, as the API does.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::Utc;
use serde::Deserialize;
use tpa_core::api::ExplainView;
use tpa_core::{GroupName, Identity, User, Username};

use crate::config::Config;
use crate::store::Conn;
use crate::workflow::explain::explain;

/// The user `name` as the policy sees them: a local account's groups, or
/// `groups` when given (a user of an SSO connector, or a what-if).
fn user(config: &Config, name: &str, groups: Option<&[String]>) -> anyhow::Result<User> {
    let username = Username::parse(name).with_context(|| format!("--user {name:?}"))?;
    let account = config.accounts.iter().find(|a| a.username == username);
    let groups: BTreeSet<GroupName> = match (groups, account) {
        (Some(groups), _) => groups
            .iter()
            .map(|g| GroupName::parse(g).with_context(|| format!("group {g:?}")))
            .collect::<anyhow::Result<_>>()?,
        (None, Some(a)) => a.groups.clone(),
        (None, None) => anyhow::bail!(
            "{name} is not a local account of this configuration; name their groups (--group G, repeated) to explain for an SSO user"
        ),
    };
    Ok(User {
        identity: Identity::local(&username),
        display_name: username.to_string(),
        username,
        groups,
    })
}

/// The store, when it opens (SQLite or PostgreSQL): the explanation then
/// names the SSO users the store knows as members of an approval group;
/// without it, what the configuration alone answers.
fn open_db(config: &Config) -> Option<Conn> {
    super::database::open(config).ok()
}

/// `tpa-ca policy explain --config F --user U --role R --host H [--for D] [--group G…] [--json]`.
pub(super) fn run_explain(
    config: &Path,
    who: &str,
    groups: &[String],
    (role, host, duration): (&str, &str, Option<&str>),
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let groups = (!groups.is_empty()).then_some(groups);
    let user = user(&config, who, groups)?;
    let conn = open_db(&config);
    let view = explain(
        conn.as_ref(),
        &config,
        &user,
        (role, host, duration),
        Utc::now(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).context("cannot encode the explanation")?
        );
    } else {
        print!("{view}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One expected answer of `CASES.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    user: String,
    #[serde(default)]
    groups: Option<Vec<String>>,
    role: String,
    host: String,
    #[serde(default, rename = "for")]
    duration: Option<String>,
    /// `allowed` or `denied`.
    expect: String,
    /// For a denial: the refusal code.
    #[serde(default)]
    code: Option<String>,
    /// The approval path: `auto`, `stages`, `break_glass`.
    #[serde(default)]
    path: Option<String>,
    /// The stage groups, in order (`[]` for none).
    #[serde(default)]
    approvers: Option<Vec<String>>,
    /// The certificate principals.
    #[serde(default)]
    principals: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

/// What changed between `case` and `got`, if anything.
fn differences(case: &Case, got: &ExplainView) -> Vec<String> {
    let mut out = Vec::new();
    let answer = if got.allowed { "allowed" } else { "denied" };
    if case.expect != answer {
        out.push(format!(
            "expected {}, got {answer}{}",
            case.expect,
            got.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ));
        return out;
    }
    if let Some(code) = &case.code
        && got.code.as_deref() != Some(code.as_str())
    {
        out.push(format!(
            "expected code {code}, got {}",
            got.code.as_deref().unwrap_or("none")
        ));
    }
    if let Some(path) = &case.path
        && got.path.as_deref() != Some(path.as_str())
    {
        out.push(format!(
            "expected path {path}, got {}",
            got.path.as_deref().unwrap_or("none")
        ));
    }
    if let Some(approvers) = &case.approvers {
        let groups: Vec<String> = got.stages.iter().map(|s| s.group.clone()).collect();
        if &groups != approvers {
            out.push(format!(
                "expected approvers [{}], got [{}]",
                approvers.join(", "),
                groups.join(", ")
            ));
        }
    }
    if let Some(principals) = &case.principals {
        let got: Vec<String> = got
            .grant
            .as_ref()
            .map(|g| g.principals.clone())
            .unwrap_or_default();
        if &got != principals {
            out.push(format!(
                "expected principals [{}], got [{}]",
                principals.join(", "),
                got.join(", ")
            ));
        }
    }
    out
}

/// `tpa-ca policy test --config F CASES.toml`: exits 1 naming every case
/// whose answer changed.
pub(super) fn run_test(config: &Path, cases: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let text = std::fs::read_to_string(cases)
        .with_context(|| format!("cannot read {}", cases.display()))?;
    let cases: Cases = toml::from_str(&text)
        .with_context(|| format!("{} is not a cases file", cases.display()))?;
    let conn = open_db(&config);
    let now = Utc::now();
    let mut changed = 0usize;
    for case in &cases.cases {
        let user = user(&config, &case.user, case.groups.as_deref())
            .with_context(|| format!("case {:?}", case.name))?;
        let got = explain(
            conn.as_ref(),
            &config,
            &user,
            (&case.role, &case.host, case.duration.as_deref()),
            now,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let diff = differences(case, &got);
        if diff.is_empty() {
            println!("ok       {}", case.name);
        } else {
            changed += 1;
            println!("CHANGED  {}: {}", case.name, diff.join("; "));
        }
    }
    println!("{} case(s), {changed} changed", cases.cases.len());
    Ok(if changed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
