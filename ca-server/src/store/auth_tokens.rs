//! The `auth_tokens` table: web sessions and API tokens, stored by the SHA-256
//! of their secret (never the secret itself).

use chrono::{DateTime, Utc};

use super::StoreError;
use super::sql::{Row, Sql};
use tpa_core::audit::format_time;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A browser session (cookie `tpa_session`), with a CSRF token.
    WebSession,
    /// A bearer token for the API (`tpa-ssh`).
    Api,
}

impl TokenKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::WebSession => "web_session",
            TokenKind::Api => "api",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "web_session" => Ok(TokenKind::WebSession),
            "api" => Ok(TokenKind::Api),
            other => Err(StoreError::Corrupt(format!(
                "auth_tokens.kind {other:?} is unknown"
            ))),
        }
    }
}

/// A row of `auth_tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    /// Random public id, for logs and the audit trail.
    pub id: String,
    /// Hex SHA-256 of the secret token.
    pub token_hash: String,
    /// Session or API token.
    pub kind: TokenKind,
    /// The user's identity issuer.
    pub issuer: String,
    /// The user's identity subject.
    pub subject: String,
    /// The user's username.
    pub username: String,
    /// The name shown to people (NULL in rows older than the column: the username).
    pub display_name: Option<String>,
    /// JSON array of the user's groups at login.
    pub groups: String,
    /// Web sessions only: the CSRF token forms must carry.
    pub csrf_token: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// RFC 3339 UTC, when revoked.
    pub revoked_at: Option<String>,
    /// An API token from a device login (`tpa-ssh login --no-browser`).
    pub device_login: bool,
}

/// Inserts a token; fails if its id or hash exists.
pub fn insert(tx: &impl Sql, row: &TokenRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO auth_tokens (id, token_hash, kind, issuer, subject, username, groups,
             csrf_token, created_at, expires_at, revoked_at, device_login, display_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        &[
            &row.id,
            &row.token_hash,
            &row.kind.as_str(),
            &row.issuer,
            &row.subject,
            &row.username,
            &row.groups,
            &row.csrf_token,
            &row.created_at,
            &row.expires_at,
            &row.revoked_at,
            &row.device_login,
            &row.display_name,
        ],
    )?;
    Ok(())
}

fn token_from(r: &Row<'_, '_>) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        kind: TokenKind::parse(&r.get::<String>(2)?)?,
        issuer: r.get(3)?,
        subject: r.get(4)?,
        username: r.get(5)?,
        groups: r.get(6)?,
        csrf_token: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        revoked_at: r.get(10)?,
        device_login: r.get(11)?,
        display_name: r.get(12)?,
    })
}

/// The token with this hash when it is neither expired nor revoked at `now`.
pub fn find_active_by_hash(
    conn: &impl Sql,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<TokenRow>, StoreError> {
    // Stored times are fixed-width RFC 3339 UTC, so they compare as text.
    conn.query_opt(
        "SELECT id, token_hash, kind, issuer, subject, username, groups, csrf_token,
                created_at, expires_at, revoked_at, device_login, display_name
         FROM auth_tokens
         WHERE token_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2",
        &[&token_hash, &format_time(now)],
        token_from,
    )
}

/// The groups (JSON array) of the identity's most recent login, if any
/// session or token of it is still stored: how the CA knows an OpenID
/// Connect user's groups between their logins.
pub fn latest_groups(
    conn: &impl Sql,
    issuer: &str,
    subject: &str,
) -> Result<Option<String>, StoreError> {
    conn.query_opt(
        "SELECT groups FROM auth_tokens WHERE issuer = ?1 AND subject = ?2
         ORDER BY created_at DESC, id LIMIT 1",
        &[&issuer, &subject],
        |r| r.get(0),
    )
}

/// Every identity of an issuer other than `exclude_issuer` with a stored
/// login, with the username and groups (JSON array) of its most recent one.
pub fn latest_logins(
    conn: &impl Sql,
    exclude_issuer: &str,
) -> Result<Vec<(String, String, String)>, StoreError> {
    conn.query_vec(
        "SELECT t.issuer, t.username, t.groups FROM auth_tokens t
         WHERE t.issuer != ?1 AND t.created_at = (
             SELECT max(u.created_at) FROM auth_tokens u
             WHERE u.issuer = t.issuer AND u.subject = t.subject)
         ORDER BY t.username",
        &[&exclude_issuer],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Revokes a token at `now`. Returns whether it was active (not yet revoked).
pub fn revoke(tx: &impl Sql, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let changed = tx.execute(
        "UPDATE auth_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        &[&id, &format_time(now)],
    )?;
    Ok(changed == 1)
}

/// Deletes tokens that expired before `before`; returns how many.
pub fn delete_expired(tx: &impl Sql, before: DateTime<Utc>) -> Result<usize, StoreError> {
    let deleted = tx.execute(
        "DELETE FROM auth_tokens WHERE expires_at <= ?1",
        &[&format_time(before)],
    )?;
    Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::store::engine::test_engines;

    fn row(id: &str, hash: &str, now: DateTime<Utc>) -> TokenRow {
        TokenRow {
            id: id.to_owned(),
            token_hash: hash.to_owned(),
            kind: TokenKind::WebSession,
            issuer: "tpa:local".to_owned(),
            subject: "alice".to_owned(),
            username: "alice".to_owned(),
            display_name: Some("Alice".to_owned()),
            groups: "[\"engineers\"]".to_owned(),
            csrf_token: Some("csrf".to_owned()),
            created_at: format_time(now),
            expires_at: format_time(now + TimeDelta::hours(1)),
            revoked_at: None,
            device_login: false,
        }
    }

    // issue 15: a token is found by its hash until it expires or is
    // revoked, and is revoked once, on both engines.
    #[test]
    fn insert_find_expire_revoke() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            let a = row("a", "hash-a", now);
            let device = TokenRow {
                kind: TokenKind::Api,
                device_login: true,
                csrf_token: None,
                ..row("d", "hash-d", now)
            };
            conn.write(|tx| {
                insert(tx, &a)?;
                insert(tx, &device)
            })
            .unwrap();

            let found =
                |conn: &crate::store::Conn, hash, at| find_active_by_hash(conn, hash, at).unwrap();
            assert_eq!(found(&conn, "hash-a", now), Some(a.clone()), "{engine:?}");
            assert_eq!(
                found(&conn, "hash-d", now),
                Some(device.clone()),
                "{engine:?}"
            );
            assert_eq!(found(&conn, "hash-b", now), None, "{engine:?}");
            let almost = now + TimeDelta::hours(1) - TimeDelta::microseconds(1);
            assert!(found(&conn, "hash-a", almost).is_some(), "{engine:?}");
            let expired = now + TimeDelta::hours(1);
            assert_eq!(found(&conn, "hash-a", expired), None, "{engine:?}");

            assert!(conn.write(|tx| revoke(tx, "a", now)).unwrap(), "{engine:?}");
            assert!(
                !conn.write(|tx| revoke(tx, "a", now)).unwrap(),
                "{engine:?}: once"
            );
            assert_eq!(found(&conn, "hash-a", now), None, "{engine:?}");
            assert!(!conn.write(|tx| revoke(tx, "nope", now)).unwrap());
        }
    }

    // issue 15: the database refuses a token hash or id twice and an
    // unknown kind, on both engines.
    #[test]
    fn hashes_and_ids_are_unique_and_kinds_checked() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            conn.write(|tx| insert(tx, &row("a", "h", now))).unwrap();
            let again = |conn: &mut crate::store::Conn, r: TokenRow| {
                conn.write(|tx| insert(tx, &r)).is_err()
            };
            assert!(again(&mut conn, row("b", "h", now)), "{engine:?}: hash");
            assert!(again(&mut conn, row("a", "h2", now)), "{engine:?}: id");
            let r = conn.execute("UPDATE auth_tokens SET kind = 'root' WHERE id = 'a'", &[]);
            assert!(r.is_err(), "{engine:?}: CHECK constraint on kind");
        }
    }

    // issue 15: expired tokens are purged, the others kept; the latest
    // login's groups are what a later request sees, on both engines.
    #[test]
    fn expired_tokens_are_purged_and_latest_login_wins() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            let old = TokenRow {
                groups: "[\"old\"]".into(),
                ..row("old", "h1", now - TimeDelta::hours(2))
            };
            let bob = TokenRow {
                issuer: "https://sso.example".into(),
                subject: "bob-sub".into(),
                username: "bob".into(),
                ..row("bob", "h3", now)
            };
            conn.write(|tx| {
                insert(tx, &old)?;
                insert(tx, &row("new", "h2", now))?;
                insert(tx, &bob)
            })
            .unwrap();
            assert_eq!(
                latest_groups(&conn, "tpa:local", "alice")
                    .unwrap()
                    .as_deref(),
                Some("[\"engineers\"]"),
                "{engine:?}"
            );
            assert_eq!(latest_groups(&conn, "tpa:local", "nobody").unwrap(), None);
            assert_eq!(
                latest_logins(&conn, "tpa:local").unwrap(),
                vec![(
                    "https://sso.example".into(),
                    "bob".into(),
                    "[\"engineers\"]".into()
                )],
                "{engine:?}"
            );
            assert_eq!(
                conn.write(|tx| delete_expired(tx, now)).unwrap(),
                1,
                "{engine:?}"
            );
            assert!(find_active_by_hash(&conn, "h2", now).unwrap().is_some());
        }
    }
}
