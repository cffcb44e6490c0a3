//! The verified email of an identity: what on-call providers and ticket
//! systems match a person by. Email never decides who someone is (identity
//! is issuer and subject); it only finds the person at a provider, and only
//! an address someone vouched for counts.
//!
//! One accessor per connector: a local account's `email` (written by the
//! operator), an OpenID Connect login's `email` when the provider said
//! `email_verified: true`, and a directory's `mail` attribute (both recorded
//! at every login, forgotten when a login carries none).

use chrono::{DateTime, Utc};
use tpa_core::identity::LOCAL_ISSUER;
use tpa_core::{Identity, User, VerifiedEmail};

use crate::config::Config;
use crate::store::sql::Sql;
use crate::store::{self, StoreError, Transact};

/// The verified email of `user`, if their connector vouches for one.
pub fn identity_email(
    conn: &impl Sql,
    config: &Config,
    user: &User,
) -> Result<Option<VerifiedEmail>, StoreError> {
    if user.identity.issuer() == LOCAL_ISSUER {
        return Ok(config
            .accounts
            .iter()
            .find(|a| a.username.as_str() == user.identity.subject())
            .and_then(|a| a.email.clone()));
    }
    store::integrations::verified_email(conn, &user.identity)
}

pub use crate::auth::identity::claims::verified_claim;

/// Records what an OpenID Connect or directory login said about the
/// identity's email (forgetting it when the login verified none).
pub fn record_login(
    conn: &mut impl Transact,
    identity: &Identity,
    email: Option<&VerifiedEmail>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.write(|tx| store::integrations::record_email(tx, identity, email, now))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::verified_claim;

    #[test]
    fn only_a_verified_email_counts() {
        // issue 17: a user with the requester's email but unverified is never matched.
        let email = Some("alice@example.com");
        assert_eq!(
            verified_claim(email, Some(&json!(true))).map(|e| e.to_string()),
            Some("alice@example.com".to_owned())
        );
        for unverified in [json!(false), json!("true"), json!(1), json!(null)] {
            assert_eq!(
                verified_claim(email, Some(&unverified)),
                None,
                "{unverified}"
            );
        }
        assert_eq!(verified_claim(email, None), None);
        assert_eq!(verified_claim(None, Some(&json!(true))), None);
        assert_eq!(
            verified_claim(Some("not an email"), Some(&json!(true))),
            None
        );
    }
}
