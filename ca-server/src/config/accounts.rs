//! `[[accounts]]` (built-in local accounts) and `[auth]` (session and token
//! lifetimes, administrator groups).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tpa_core::{GroupName, HumanDuration, Username};

/// One built-in local account.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// Login name; the identity is `tpa:local#<username>`.
    pub username: Username,
    /// Name shown on pages (the username when not set).
    pub display_name: String,
    /// The argon2id PHC string (`$argon2id$v=19$m=…`), checked at load.
    pub password_hash: String,
    /// Group memberships.
    pub groups: BTreeSet<GroupName>,
    /// The account's email, vouched for by the operator who wrote it: what
    /// an on-call provider's user is matched by.
    pub email: Option<tpa_core::VerifiedEmail>,
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not printed: it is an offline-guessing target.
        f.debug_struct("AccountConfig")
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// Lifetimes of login sessions and API tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// How long a web login session lasts.
    pub session_ttl: HumanDuration,
    /// How long an API token (from `POST /api/v1/login`) lasts.
    pub api_token_ttl: HumanDuration,
    /// How long an API token from a device login (`tpa-ssh login
    /// --no-browser`) lasts: shorter, since a device login is the one a
    /// phisher can start for someone else (issue 18).
    pub device_token_ttl: HumanDuration,
    /// Members of these groups are administrators: they may revoke any
    /// certificate, request, user or CA key through the API and the pages.
    pub admin_groups: BTreeSet<GroupName>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    username: String,
    display_name: Option<String>,
    password_hash: Option<String>,
    password_hash_file: Option<PathBuf>,
    #[serde(default)]
    groups: Vec<String>,
    email: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    session_ttl: Option<String>,
    api_token_ttl: Option<String>,
    device_token_ttl: Option<String>,
    #[serde(default)]
    admin_groups: Vec<String>,
}

/// `[auth]`: session and token lifetimes, administrator groups.
pub(super) fn auth_config(raw: &RawAuth) -> Result<AuthConfig, String> {
    let duration = |key: &str, value: Option<&str>, default: &str| {
        HumanDuration::parse(value.unwrap_or(default)).map_err(|e| format!("auth.{key}: {e}"))
    };
    Ok(AuthConfig {
        session_ttl: duration("session_ttl", raw.session_ttl.as_deref(), "8h")?,
        api_token_ttl: duration("api_token_ttl", raw.api_token_ttl.as_deref(), "12h")?,
        device_token_ttl: duration("device_token_ttl", raw.device_token_ttl.as_deref(), "1h")?,
        admin_groups: raw
            .admin_groups
            .iter()
            .map(|g| GroupName::parse(g).map_err(|e| format!("auth.admin_groups: {e}")))
            .collect::<Result<_, _>>()?,
    })
}

/// `[[accounts]]`: each parsed, usernames unique.
pub(super) fn accounts(
    raw: &[RawAccount],
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<Vec<AccountConfig>, String> {
    let mut accounts: Vec<AccountConfig> = Vec::with_capacity(raw.len());
    for (index, account) in raw.iter().enumerate() {
        let account = parse_account(account, index, resolve)?;
        if accounts.iter().any(|a| a.username == account.username) {
            return Err(format!(
                "accounts: username {:?} appears twice; each account needs its own username",
                account.username.as_str()
            ));
        }
        accounts.push(account);
    }
    Ok(accounts)
}

/// Checks one `[[accounts]]` entry; the error names the account.
fn parse_account(
    raw: &RawAccount,
    index: usize,
    resolve: &impl Fn(&Path) -> PathBuf,
) -> Result<AccountConfig, String> {
    let username =
        Username::parse(&raw.username).map_err(|e| format!("accounts[{index}].username: {e}"))?;
    let name = username.as_str();
    let display_name = match raw.display_name.as_deref() {
        None => name.to_owned(),
        Some(d) if d.trim().is_empty() || d.len() > 128 || d.contains(char::is_control) => {
            return Err(format!(
                "account {name:?}: display_name must be 1 to 128 bytes without control characters"
            ));
        }
        Some(d) => d.to_owned(),
    };
    let password_hash = match (&raw.password_hash, &raw.password_hash_file) {
        (Some(hash), None) => hash.trim().to_owned(),
        (None, Some(file)) => {
            let path = resolve(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "account {name:?}: cannot read password_hash_file {}: {e}",
                    path.display()
                )
            })?;
            text.trim().to_owned()
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "account {name:?}: set password_hash or password_hash_file, not both"
            ));
        }
        (None, None) => {
            return Err(format!(
                "account {name:?}: password_hash or password_hash_file is required; create a hash with `tpa-ca hash-password`"
            ));
        }
    };
    check_password_hash(&password_hash)
        .map_err(|e| format!("account {name:?}: password hash {e}"))?;
    let mut groups = BTreeSet::new();
    for group in &raw.groups {
        let group =
            GroupName::parse(group).map_err(|e| format!("account {name:?}: groups: {e}"))?;
        groups.insert(group);
    }
    let email = raw
        .email
        .as_deref()
        .map(tpa_core::VerifiedEmail::parse)
        .transpose()
        .map_err(|e| format!("account {name:?}: {e}"))?;
    Ok(AccountConfig {
        username,
        display_name,
        password_hash,
        groups,
        email,
    })
}

/// Checks that `hash` is an argon2id PHC string with parameters argon2 accepts.
pub fn check_password_hash(hash: &str) -> Result<(), String> {
    use argon2::PasswordHash;
    let parsed = PasswordHash::new(hash).map_err(|_| {
        "is not a PHC string such as $argon2id$v=19$m=19456,t=2,p=1$…; create one with `tpa-ca hash-password`".to_owned()
    })?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "uses {:?}; only argon2id is accepted (create one with `tpa-ca hash-password`)",
            parsed.algorithm.as_str()
        ));
    }
    argon2::Params::try_from(&parsed)
        .map_err(|e| format!("has unusable argon2id parameters ({e})"))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("lacks a salt or a hash value".to_owned());
    }
    Ok(())
}
