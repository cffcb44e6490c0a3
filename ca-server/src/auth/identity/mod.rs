//! Who is logging in: the identity connectors behind one interface.
//!
//! The built-in local accounts of `[[accounts]]` ([`local`]) and the OpenID
//! Connect providers of `[[oidc]]` ([`oidc`]) sit side by side. Callers see
//! [`Identities`]: password login, the OIDC connectors by name, and
//! [`Identities::refresh`] to re-read a user's groups before a decision.

pub mod automated;
pub mod claims;
pub mod ldap;
pub mod local;
pub mod oidc;
pub mod password_login;

use tpa_core::User;
use tpa_core::identity::LOCAL_ISSUER;

use crate::config::Config;

pub use local::{HashError, MAX_PASSWORD_BYTES, hash_password};
pub use password_login::{DirectoryDown, PasswordLogin, PasswordLoginError};

/// Why the identity configuration cannot be used. The server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum IdentityConfigError {
    /// An `[[accounts]]` entry is unusable.
    #[error("account {username:?}: {message}")]
    Account {
        /// The account.
        username: String,
        /// What is wrong.
        message: String,
    },
    /// The hash used to equalise the time of unknown-user logins cannot be made.
    #[error("cannot prepare password verification: {0}")]
    Dummy(String),
    /// An `[[ldap]]` entry is unusable.
    #[error("ldap connector {name:?}: {message}")]
    Ldap {
        /// The connector.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An `[[oidc]]` entry is unusable.
    #[error("oidc connector {name:?}: {message}")]
    Oidc {
        /// The connector.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Why a login failed. Deliberately one variant: an unknown user and a wrong
/// password are indistinguishable to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown username or wrong password.
    #[error("unknown username or wrong password")]
    InvalidCredentials,
}

/// Every identity connector of the CA.
#[derive(Debug)]
pub struct Identities {
    local: local::LocalAccounts,
    oidc: Vec<oidc::OidcConnector>,
    /// The policy hook as an approver (`[policy_hook] approves_as`).
    automated_check: Option<User>,
    ldap: Vec<ldap::LdapConnector>,
}

/// The path providers send users back to (`server.public_url` + this).
pub const OIDC_CALLBACK_PATH: &str = "/oidc/callback";

impl Identities {
    /// Builds the connectors from the configuration; fails closed on any bad account.
    pub fn from_config(config: &Config) -> Result<Self, IdentityConfigError> {
        let mut connectors = Vec::with_capacity(config.oidc.len());
        if !config.oidc.is_empty() {
            let invalid = |name: &str, message: String| IdentityConfigError::Oidc {
                name: name.to_owned(),
                message,
            };
            let origin = config
                .public_url
                .as_ref()
                .map(|u| u.origin())
                .ok_or_else(|| {
                    invalid(
                        "*",
                        "server.public_url is required with [[oidc]]".to_owned(),
                    )
                })?;
            let http = oidc::http_client().map_err(|e| invalid("*", e))?;
            for connector in &config.oidc {
                let redirect = format!("{origin}{OIDC_CALLBACK_PATH}");
                connectors.push(
                    oidc::OidcConnector::new(connector.clone(), &redirect, http.clone())
                        .map_err(|e| invalid(&connector.name, e))?,
                );
            }
        }
        let ldap = config
            .ldap
            .iter()
            .map(|c| {
                ldap::LdapConnector::new(c.clone()).map_err(|message| IdentityConfigError::Ldap {
                    name: c.name.clone(),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            local: local::LocalAccounts::new(&config.accounts)?,
            oidc: connectors,
            automated_check: config
                .policy_hook
                .as_ref()
                .and_then(|h| h.approves_as.clone())
                .and_then(automated::hook_user),
            ldap,
        })
    }

    /// The OpenID Connect connectors, in configuration order.
    pub fn oidc_connectors(&self) -> &[oidc::OidcConnector] {
        &self.oidc
    }

    /// The OpenID Connect connector named `name`.
    pub fn oidc(&self, name: &str) -> Option<&oidc::OidcConnector> {
        self.oidc.iter().find(|c| c.config.name == name)
    }

    /// Discovers every OpenID Connect provider. A provider that cannot be
    /// reached is logged and left unavailable (its logins show an error page,
    /// `/healthz` reports it, and each login attempt retries discovery).
    pub async fn discover_oidc(&self) {
        for connector in &self.oidc {
            match connector.discover().await {
                Ok(()) => tracing::info!(
                    connector = %connector.config.name,
                    issuer = %connector.config.issuer,
                    "OpenID provider discovered"
                ),
                Err(e) => tracing::error!(
                    connector = %connector.config.name,
                    issuer = %connector.config.issuer,
                    error = %e,
                    "OpenID provider unavailable; its logins fail until it answers"
                ),
            }
        }
    }

    /// Password login for local accounts. Unknown user and wrong password give
    /// the same error and take the same time (an unknown user is verified
    /// against a dummy hash). CPU-heavy (argon2id): call it in `spawn_blocking`.
    pub fn verify_password(&self, username: &str, password: &str) -> Result<User, LoginError> {
        self.local
            .verify(username, password)
            .ok_or(LoginError::InvalidCredentials)
    }

    /// The user as of now, for decisions: `None` when the account is gone.
    /// Local accounts are re-read from the configuration (current groups and
    /// display name). Users of an OpenID Connect issuer keep the groups of
    /// their login (re-read at the next login), and lose access at once when
    /// their issuer is no longer a configured connector.
    pub fn refresh(&self, user: &User) -> Option<User> {
        if user.identity.issuer() == automated::HOOK_ISSUER {
            // The policy hook approves as long as it is configured to.
            self.automated_check
                .clone()
                .filter(|hook| hook.identity == user.identity)
        } else if user.identity.issuer() == LOCAL_ISSUER {
            self.local
                .get(user.identity.subject())
                .filter(|fresh| fresh.identity == user.identity)
        } else if let Some(directory) = self
            .ldap
            .iter()
            .find(|c| c.issuer() == user.identity.issuer())
        {
            // Directory users: live (blocking on a cache miss); an
            // unreachable directory counts as no user (fail closed).
            directory
                .current_blocking(user.identity.subject())
                .ok()
                .flatten()
                .map(|login| login.user)
        } else {
            let trimmed = |s: &str| s.trim_end_matches('/').to_owned();
            let issuer = trimmed(user.identity.issuer());
            self.oidc
                .iter()
                .any(|c| trimmed(&c.config.issuer) == issuer)
                .then(|| user.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use tpa_core::{GroupName, Identity, Username};

    use super::*;

    fn identities(accounts: &str) -> Identities {
        let text = format!("[ca]\nkey_file = \"k\"\n[database]\npath = \"d\"\n{accounts}");
        let config = Config::parse(&text, Path::new("/etc/tpa/tpa.toml")).unwrap();
        Identities::from_config(&config).unwrap()
    }

    fn account(name: &str, password: &str, groups: &str) -> String {
        let hash = hash_password(password).unwrap();
        format!(
            "[[accounts]]\nusername = \"{name}\"\npassword_hash = \"{hash}\"\ngroups = [{groups}]\n"
        )
    }

    #[test]
    fn password_login() {
        let ids = identities(&account("alice", "s3cret pass", "\"engineers\""));
        let user = ids.verify_password("alice", "s3cret pass").unwrap();
        assert_eq!(
            user.identity,
            Identity::local(&Username::parse("alice").unwrap())
        );
        assert_eq!(user.display_name, "alice");
        assert_eq!(
            user.groups,
            BTreeSet::from([GroupName::parse("engineers").unwrap()])
        );
        let wrong = ids.verify_password("alice", "s3cret pasS").unwrap_err();
        let unknown = ids.verify_password("mallory", "s3cret pass").unwrap_err();
        assert_eq!(wrong, unknown);
        assert_eq!(wrong, LoginError::InvalidCredentials);
        assert!(ids.verify_password("alice", "").is_err());
        assert!(ids.verify_password("alice", &"x".repeat(5000)).is_err());
    }

    #[test]
    fn refresh_rereads_local_accounts_and_drops_unknown_issuers() {
        let ids = identities(&account("bob", "pw", "\"sre-leads\""));
        let mut bob = ids.verify_password("bob", "pw").unwrap();
        bob.groups.clear();
        let fresh = ids.refresh(&bob).unwrap();
        assert!(fresh.in_group(&GroupName::parse("sre-leads").unwrap()));

        let gone = User {
            identity: Identity::local(&Username::parse("carol").unwrap()),
            ..bob.clone()
        };
        assert_eq!(ids.refresh(&gone), None, "deleted account");

        let oidc = User {
            identity: Identity::new("https://idp.example", "bob").unwrap(),
            ..bob
        };
        assert_eq!(
            ids.refresh(&oidc),
            None,
            "same subject at an issuer that is not (or no longer) a configured connector"
        );
    }
}
