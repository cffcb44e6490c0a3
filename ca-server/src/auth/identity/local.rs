//! Built-in local accounts: argon2id password hashes and groups from `[[accounts]]`.

use std::collections::HashMap;

use argon2::password_hash::PasswordHasher as _;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordVerifier as _, Version};
use tpa_core::{Identity, User};

use crate::config::{AccountConfig, check_password_hash};

/// OWASP's recommended argon2id parameters: 19 MiB of memory, 2 passes, 1 lane.
const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Passwords longer than this are refused without a real comparison (after
/// the same work as a comparison), so a huge password cannot cost more.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password cannot be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Empty or over [`MAX_PASSWORD_BYTES`].
    #[error("the password must be 1 to {MAX_PASSWORD_BYTES} bytes")]
    BadLength,
    /// argon2 failed (no randomness for the salt, for instance).
    #[error("cannot hash the password: {0}")]
    Argon2(String),
}

fn hasher() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with argon2id (OWASP parameters, random 16-byte salt) as a PHC string.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(HashError::BadLength);
    }
    let hash = hasher()?
        .hash_password(password.as_bytes())
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(hash.to_string())
}

/// One account, with its hash parsed once.
#[derive(Debug)]
struct Account {
    user: User,
    hash: PasswordHash,
}

/// The local accounts, by username.
#[derive(Debug)]
pub(super) struct LocalAccounts {
    accounts: HashMap<String, Account>,
    /// Verified when the username is unknown, so that an unknown user costs
    /// the same time as a wrong password.
    dummy: PasswordHash,
}

impl LocalAccounts {
    pub(super) fn new(config: &[AccountConfig]) -> Result<Self, super::IdentityConfigError> {
        let mut accounts = HashMap::with_capacity(config.len());
        for account in config {
            let name = account.username.as_str().to_owned();
            let invalid = |message: String| super::IdentityConfigError::Account {
                username: name.clone(),
                message,
            };
            check_password_hash(&account.password_hash).map_err(&invalid)?;
            let hash = PasswordHash::new(&account.password_hash)
                .map_err(|e| invalid(format!("password hash is not a PHC string ({e})")))?;
            let user = User {
                identity: Identity::local(&account.username),
                username: account.username.clone(),
                display_name: account.display_name.clone(),
                groups: account.groups.clone(),
            };
            if accounts
                .insert(name.clone(), Account { user, hash })
                .is_some()
            {
                return Err(invalid("the username appears twice".to_owned()));
            }
        }
        let dummy = hash_password("tpa dummy password for unknown users")
            .map_err(|e| super::IdentityConfigError::Dummy(e.to_string()))?;
        let dummy = PasswordHash::new(&dummy)
            .map_err(|e| super::IdentityConfigError::Dummy(e.to_string()))?;
        Ok(Self { accounts, dummy })
    }

    /// The user when `password` is theirs. Always runs one argon2 verification.
    pub(super) fn verify(&self, username: &str, password: &str) -> Option<User> {
        let account = self.accounts.get(username);
        if password.len() > MAX_PASSWORD_BYTES {
            // Same work, certain failure: a fixed string against the dummy hash.
            let _ = Argon2::default().verify_password(b"x", &self.dummy);
            return None;
        }
        let hash = account.map_or(&self.dummy, |a| &a.hash);
        // The hash's own algorithm and parameters are used; `Argon2::default`
        // only supplies what the PHC string leaves out.
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok();
        match account {
            Some(account) if ok => Some(account.user.clone()),
            _ => None,
        }
    }

    /// The account's current user, if it still exists.
    pub(super) fn get(&self, username: &str) -> Option<User> {
        self.accounts.get(username).map(|a| a.user.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        check_password_hash(&hash).unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"correct horsf", &parsed)
                .is_err()
        );
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn empty_and_huge_passwords_are_not_hashed() {
        assert!(matches!(hash_password(""), Err(HashError::BadLength)));
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(hash_password(&huge), Err(HashError::BadLength)));
    }
}
