//! Password login across the connectors that take passwords (local accounts
//! and LDAP directories), and the live re-read of a user before a decision
//! (a directory's groups now, within its cache time).

use tpa_core::User;

use super::Identities;
use super::ldap::{LdapConnector, LdapError};

/// Why a password login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordLoginError {
    /// Unknown user or wrong password (indistinguishable to the caller);
    /// `reason` is for the audit trail only.
    #[error("unknown username or wrong password")]
    InvalidCredentials {
        /// Why, for the audit trail (never shown to the caller).
        reason: String,
    },
    /// The directory account is disabled or locked (the password was right).
    #[error("the directory account is disabled")]
    AccountDisabled,
    /// The directory password has expired.
    #[error("the directory password has expired")]
    PasswordExpired,
    /// The directory entry cannot be a TPA user.
    #[error("{0}")]
    Unusable(String),
    /// The directory cannot be asked: nobody is logged in (fail closed).
    #[error("{0}")]
    DirectoryUnavailable(String),
}

/// A successful password login.
#[derive(Debug, Clone)]
pub struct PasswordLogin {
    /// Who logged in.
    pub user: User,
    /// The audit reason: `password login` or `ldap login via <name>`.
    pub via: String,
    /// A verified e-mail address when the connector has one (LDAP `mail`).
    pub verified_email: Option<String>,
}

/// Why a user could not be re-read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("directory {connector:?} cannot be reached: {message}")]
pub struct DirectoryDown {
    /// The connector's name.
    pub connector: String,
    /// What failed.
    pub message: String,
}

impl Identities {
    /// The LDAP connectors, in configuration order.
    pub fn ldap_connectors(&self) -> &[LdapConnector] {
        &self.ldap
    }

    fn ldap_of(&self, issuer: &str) -> Option<&LdapConnector> {
        self.ldap.iter().find(|c| c.issuer() == issuer)
    }

    /// Password login: a local account of that name first; otherwise each
    /// directory in order until one has the user. With no directory, an
    /// unknown user costs the same as a wrong password (argon2 dummy).
    pub async fn password_login(
        self: &std::sync::Arc<Self>,
        username: &str,
        password: &str,
    ) -> Result<PasswordLogin, PasswordLoginError> {
        if self.ldap.is_empty() || self.local.get(username).is_some() {
            let identities = self.clone();
            let (u, p) = (username.to_owned(), password.to_owned());
            let verified = tokio::task::spawn_blocking(move || identities.verify_password(&u, &p))
                .await
                .map_err(|e| PasswordLoginError::DirectoryUnavailable(e.to_string()))?;
            return verified
                .map(|user| PasswordLogin {
                    user,
                    via: "password login".to_owned(),
                    verified_email: None,
                })
                .map_err(|_| PasswordLoginError::InvalidCredentials {
                    reason: "invalid credentials".to_owned(),
                });
        }
        let invalid = |reason: String| PasswordLoginError::InvalidCredentials { reason };
        let mut last = invalid("invalid credentials (no directory entry)".to_owned());
        for connector in &self.ldap {
            let name = &connector.config.name;
            match connector.login(username, password).await {
                Ok(login) => {
                    return Ok(PasswordLogin {
                        user: login.user,
                        via: format!("ldap login via {name}"),
                        verified_email: login.verified_email,
                    });
                }
                Err(LdapError::NotFound) => {
                    last = invalid(format!("invalid credentials (no entry in {name})"));
                }
                Err(
                    e
                    @ (LdapError::EmptyPassword | LdapError::BadPassword | LdapError::BadUsername),
                ) => {
                    return Err(invalid(format!("invalid credentials ({e})")));
                }
                Err(LdapError::Ambiguous) => {
                    return Err(invalid(format!(
                        "invalid credentials (several entries in {name} match the username)"
                    )));
                }
                Err(LdapError::WrongPassword) => {
                    return Err(invalid(format!("invalid credentials (refused by {name})")));
                }
                Err(LdapError::AccountDisabled) => return Err(PasswordLoginError::AccountDisabled),
                Err(LdapError::PasswordExpired) => return Err(PasswordLoginError::PasswordExpired),
                Err(LdapError::Unusable(m)) => {
                    return Err(PasswordLoginError::Unusable(format!(
                        "directory {name:?}: {m}"
                    )));
                }
                Err(LdapError::Unavailable(m)) => {
                    return Err(PasswordLoginError::DirectoryUnavailable(format!(
                        "directory {name:?} cannot be reached: {m}"
                    )));
                }
            }
        }
        Err(last)
    }

    /// The user as of now, for decisions and issuance. Directory users are
    /// re-read live (within the connector's `groups_cache`); `Ok(None)` when
    /// the account is gone or disabled; `Err` when the directory cannot be
    /// asked, so that the caller fails closed. Others as [`Identities::refresh`].
    pub async fn refresh_live(&self, user: &User) -> Result<Option<User>, DirectoryDown> {
        match self.ldap_of(user.identity.issuer()) {
            Some(c) => c
                .current(user.identity.subject())
                .await
                .map(|found| found.map(|l| l.user))
                .map_err(|e| down(c, &e)),
            None => Ok(self.refresh(user)),
        }
    }

    /// [`Identities::refresh_live`] for synchronous callers (the workflow
    /// inside its transaction); blocks on a cache miss.
    pub fn refresh_live_blocking(&self, user: &User) -> Result<Option<User>, DirectoryDown> {
        match self.ldap_of(user.identity.issuer()) {
            Some(c) => c
                .current_blocking(user.identity.subject())
                .map(|found| found.map(|l| l.user))
                .map_err(|e| down(c, &e)),
            None => Ok(self.refresh(user)),
        }
    }

    /// Whether `issuer` is one of the configured directories.
    pub fn is_directory(&self, issuer: &str) -> bool {
        self.ldap_of(issuer).is_some()
    }
}

fn down(connector: &LdapConnector, e: &LdapError) -> DirectoryDown {
    DirectoryDown {
        connector: connector.config.name.clone(),
        message: e.to_string(),
    }
}
