//! The steps of a directory login and of a live re-read, run on the
//! directory runtime: check the input, find exactly one entry, bind as it
//! on a connection of its own, check the account, read the groups.

use ldap3::Scope;

use super::conn::{connect, within};
use super::entry::{self, AccountState, UserEntry};
use super::filter::{dn_value, fill, filter_value};
use super::{Inner, LdapError, LdapLogin, groups};
use crate::auth::identity::MAX_PASSWORD_BYTES;

/// The longest username looked up (bytes).
const MAX_USERNAME_BYTES: usize = 256;

/// Refuses a username no directory lookup should see.
pub(super) fn check_username(username: &str) -> Result<(), LdapError> {
    if username.is_empty()
        || username.len() > MAX_USERNAME_BYTES
        || username.contains(char::is_control)
    {
        return Err(LdapError::BadUsername);
    }
    Ok(())
}

/// Refuses, before any network step, what must never reach a bind.
pub(super) fn check_input(username: &str, password: &str) -> Result<(), LdapError> {
    if password.is_empty() {
        return Err(LdapError::EmptyPassword);
    }
    if password.contains('\0') || password.len() > MAX_PASSWORD_BYTES {
        return Err(LdapError::BadPassword);
    }
    check_username(username)
}

/// Logs `username` in with `password` (or only looks the entry up with `None`).
pub(super) async fn login(
    inner: &Inner,
    username: &str,
    password: Option<&str>,
) -> Result<LdapLogin, LdapError> {
    let config = &inner.config;
    let (mut service, entry) = match &config.user_dn_template {
        // Direct bind: the DN is built (escaped), then read as the user.
        Some(template) if config.bind_dn.is_none() => {
            let dn = fill(template, &[("username", username)], dn_value);
            let Some(password) = password else {
                return Err(LdapError::Unusable(
                    "without bind_dn, a lookup needs the password (use --bind)".to_owned(),
                ));
            };
            let mut conn = connect(config, inner.tls.as_ref()).await?;
            bind_as(inner, &mut conn, &dn, password).await?;
            let entry = read_entry(inner, &mut conn, &dn).await?;
            (conn, entry)
        }
        _ => {
            let mut service = inner.service().await?;
            let filter = fill(&config.user_filter, &[("username", username)], filter_value);
            let found = match inner.find_users(&mut service, &filter).await {
                Ok(found) => found,
                Err(e) => {
                    inner.pool.clear();
                    return Err(e);
                }
            };
            let entry = match found.as_slice() {
                [] => return Err(LdapError::NotFound),
                [one] => one.clone(),
                _ => return Err(LdapError::Ambiguous),
            };
            if let Some(password) = password {
                // A connection of its own: the service connection never
                // changes identity, and the user's bind proves the password.
                let mut user_conn = connect(config, inner.tls.as_ref()).await?;
                bind_as(inner, &mut user_conn, &entry.dn, password).await?;
            }
            (service, entry)
        }
    };
    match entry.state {
        AccountState::Active => {}
        AccountState::Disabled => return Err(LdapError::AccountDisabled),
        AccountState::PasswordExpired => return Err(LdapError::PasswordExpired),
    }
    let found = groups::of_user(&mut service, config, &entry, username).await;
    let groups = match found {
        Ok(g) => g,
        Err(e) => {
            inner.pool.clear();
            return Err(e);
        }
    };
    if config.bind_dn.is_some() {
        inner.pool.put(service);
    }
    let login = inner.user_of(&entry, groups)?;
    inner.remember(&entry.id, Some(login.clone()));
    Ok(login)
}

/// Binds as `dn` with `password`; a refusal says whether the account or
/// the password was at fault (AD's diagnostics).
async fn bind_as(
    inner: &Inner,
    conn: &mut super::Conn,
    dn: &str,
    password: &str,
) -> Result<(), LdapError> {
    // Checked again here: this is the one place a password reaches the wire.
    if password.is_empty() || password.contains('\0') {
        return Err(LdapError::EmptyPassword);
    }
    let result = within(
        inner.config.timeout,
        "binding as the user",
        conn.ldap.simple_bind(dn, password),
    )
    .await?;
    match result.rc {
        0 => Ok(()),
        // invalidCredentials; AD adds why in the diagnostic text.
        49 => match entry::bind_refusal(&result.text) {
            AccountState::Disabled => Err(LdapError::AccountDisabled),
            AccountState::PasswordExpired => Err(LdapError::PasswordExpired),
            AccountState::Active => Err(LdapError::WrongPassword),
        },
        // inappropriateAuthentication, unwillingToPerform (disabled accounts on some servers).
        48 | 53 => Err(LdapError::WrongPassword),
        10 => Err(LdapError::Unavailable(format!(
            "the directory answered the bind with a referral to {}; TPA does not follow referrals",
            result.refs.join(", ")
        ))),
        rc => Err(LdapError::Unavailable(format!(
            "the directory failed the bind (rc={rc}: {})",
            result.text
        ))),
    }
}

/// Reads the entry `dn` itself (base scope).
async fn read_entry(
    inner: &Inner,
    conn: &mut super::Conn,
    dn: &str,
) -> Result<UserEntry, LdapError> {
    let attrs = entry::attributes(&inner.config);
    let result = within(
        inner.config.timeout,
        "reading the user entry",
        conn.ldap.search(dn, Scope::Base, "(objectClass=*)", attrs),
    )
    .await?;
    super::check_result(&result.1, "reading the user entry")?;
    let first = result
        .0
        .into_iter()
        .find(|e| !groups::is_reference(e))
        .ok_or(LdapError::NotFound)?;
    let entry = ldap3::SearchEntry::construct(first);
    entry::read(&entry, &inner.config).ok_or_else(|| {
        LdapError::Unusable(format!(
            "entry {dn} has no usable {}",
            inner.config.id_attribute
        ))
    })
}

/// The user of `subject` now: searched by the stable id with the service
/// account. `None` when the entry is gone or can no longer log in.
pub(super) async fn reread(inner: &Inner, subject: &str) -> Result<Option<LdapLogin>, LdapError> {
    let config = &inner.config;
    let value = if entry::is_guid(&config.id_attribute) {
        match entry::guid_bytes(subject) {
            Some(bytes) => super::filter::filter_bytes(&bytes),
            None => return Ok(None),
        }
    } else {
        filter_value(subject)
    };
    let filter = format!("({}={value})", config.id_attribute);
    let mut service = inner.service().await?;
    let found = match inner.find_users(&mut service, &filter).await {
        Ok(found) => found,
        Err(LdapError::Ambiguous) => return Ok(None),
        Err(e) => {
            inner.pool.clear();
            return Err(e);
        }
    };
    let [entry] = found.as_slice() else {
        inner.pool.put(service);
        inner.remember(subject, None);
        return Ok(None);
    };
    if entry.state != AccountState::Active || entry.id != subject {
        inner.pool.put(service);
        inner.remember(subject, None);
        return Ok(None);
    }
    let username = entry.username.clone().unwrap_or_default();
    let groups = match groups::of_user(&mut service, config, entry, &username).await {
        Ok(g) => g,
        Err(e) => {
            inner.pool.clear();
            return Err(e);
        }
    };
    inner.pool.put(service);
    let login = inner.user_of(entry, groups).ok();
    inner.remember(subject, login.clone());
    Ok(login)
}
