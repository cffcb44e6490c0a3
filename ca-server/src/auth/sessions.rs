//! Login sessions and API tokens: create (with an `auth.login` audit event),
//! authenticate, revoke (with `auth.logout`).
//!
//! A token is 32 random bytes, base64url without padding, prefixed `tpa_`
//! (API tokens) or `tpas_` (web sessions). Only its SHA-256 is stored; the
//! token itself is returned once, to the client, and never logged.

use std::collections::BTreeSet;

use base64ct::{Base64UrlUnpadded, Encoding as _};
use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use rand::RngExt as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tpa_core::{GroupName, HumanDuration, Identity, User, Username};

use crate::store::Transact;
use crate::store::auth_tokens::{self, TokenKind, TokenRow};
use crate::store::sql::Sql;
use crate::store::{self, StoreError};
use tpa_core::audit::{NewEvent, Outcome, format_time};

/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "tpa_";
/// Prefix of web session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "tpas_";
/// Longer tokens are refused without hashing them.
const MAX_TOKEN_LEN: usize = 128;
/// Expired rows are kept this long after expiry (for an operator's forensics), then deleted.
const KEEP_EXPIRED: TimeDelta = TimeDelta::days(1);

/// A live session or API token, as found by its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The public id (`auth_tokens.id`), safe to log.
    pub id: String,
    /// Web session or API token.
    pub kind: TokenKind,
    /// The user, with the groups of their login.
    pub user: User,
    /// Web sessions: the CSRF token their forms must carry.
    pub csrf_token: Option<String>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// An API token from a device login (`tpa-ssh login --no-browser`),
    /// shorter-lived and marked as such in `whoami` (issue 18).
    pub device_login: bool,
}

/// A session just created, with its secret (shown to the client once).
pub struct NewSession {
    /// The secret token; never log it.
    pub token: String,
    /// The session.
    pub session: Session,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("token", &"<redacted>")
            .field("session", &self.session)
            .finish()
    }
}

/// `N` random bytes from the operating system's CSPRNG, base64url without
/// padding: every secret token, handle and code the CA hands out.
pub(crate) fn random_b64<const N: usize>() -> String {
    let bytes: [u8; N] = rand::rng().random();
    Base64UrlUnpadded::encode_string(&bytes)
}

/// A new secret token of this kind: prefix + 32 random bytes, base64url.
pub fn new_token(kind: TokenKind) -> String {
    let prefix = match kind {
        TokenKind::Api => API_TOKEN_PREFIX,
        TokenKind::WebSession => SESSION_TOKEN_PREFIX,
    };
    format!("{prefix}{}", random_b64::<32>())
}

/// The stored form of a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The audit actor of a user: `user:<issuer>#<subject>`.
pub fn actor(user: &User) -> String {
    format!("user:{}", user.identity)
}

/// Text typed by someone unknown, made safe for the audit trail: control and
/// other odd characters escaped, at most 64 characters kept.
pub fn escape_untrusted(text: &str) -> String {
    let mut out: String = text.chars().take(64).flat_map(char::escape_debug).collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// Creates a session (web) or token (API) for `user`, expiring `ttl` after
/// `now`, and records `auth.login` `success` (reason `password login`) in the
/// same transaction.
pub fn create(
    conn: &mut impl Transact,
    user: &User,
    kind: TokenKind,
    ttl: HumanDuration,
    source: &str,
    now: DateTime<Utc>,
) -> Result<NewSession, StoreError> {
    create_with_reason(conn, user, kind, ttl, source, now, "password login")
}

/// Like [`create`], with the audit reason saying how the user logged in
/// (`oidc login via <connector>`, …).
pub fn create_with_reason(
    conn: &mut impl Transact,
    user: &User,
    kind: TokenKind,
    ttl: HumanDuration,
    source: &str,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<NewSession, StoreError> {
    insert_session(conn, user, kind, ttl, source, now, reason, false)
}

/// An API token from a device login: marked `device_login` in its row, its
/// `auth.login` event and `whoami` (issue 18), so a token a phisher obtained
/// through someone's approval is told apart from the person's own logins.
pub fn create_device_token(
    conn: &mut impl Transact,
    user: &User,
    ttl: HumanDuration,
    source: &str,
    now: DateTime<Utc>,
) -> Result<NewSession, StoreError> {
    insert_session(
        conn,
        user,
        TokenKind::Api,
        ttl,
        source,
        now,
        "device login (tpa-ssh login --no-browser)",
        true,
    )
}

#[allow(clippy::too_many_arguments, reason = "one token row's fields")]
fn insert_session(
    conn: &mut impl Transact,
    user: &User,
    kind: TokenKind,
    ttl: HumanDuration,
    source: &str,
    now: DateTime<Utc>,
    reason: &str,
    device_login: bool,
) -> Result<NewSession, StoreError> {
    let token = new_token(kind);
    let ttl = TimeDelta::from_std(ttl.get())
        .map_err(|e| StoreError::Corrupt(format!("token lifetime out of range: {e}")))?;
    // Stored with microseconds; the returned value is the stored one.
    let expires_at = (now + ttl).trunc_subsecs(6);
    let groups: Vec<&str> = user.groups.iter().map(GroupName::as_str).collect();
    let session = Session {
        id: random_b64::<16>(),
        kind,
        user: user.clone(),
        csrf_token: (kind == TokenKind::WebSession).then(random_b64::<32>),
        expires_at,
        device_login,
    };
    let row = TokenRow {
        id: session.id.clone(),
        token_hash: hash_token(&token),
        kind,
        issuer: user.identity.issuer().to_owned(),
        subject: user.identity.subject().to_owned(),
        username: user.username.as_str().to_owned(),
        display_name: Some(user.display_name.clone()),
        groups: serde_json::to_string(&groups).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        csrf_token: session.csrf_token.clone(),
        created_at: format_time(now),
        expires_at: format_time(expires_at),
        revoked_at: None,
        device_login,
    };
    conn.write(|tx| {
        auth_tokens::delete_expired(tx, now - KEEP_EXPIRED)?;
        auth_tokens::insert(tx, &row)?;
        store::audit::append(
            tx,
            &NewEvent {
                time: now,
                actor: actor(user),
                source: source.to_owned(),
                action: "auth.login".to_owned(),
                object: format!("token:{}", row.id),
                outcome: Outcome::Success,
                reason: reason.to_owned(),
                details: json!({
                    "kind": kind.as_str(),
                    "username": user.username.as_str(),
                    "groups": groups,
                    "expires_at": row.expires_at,
                    "device_login": device_login,
                }),
            },
        )?;
        Ok::<_, StoreError>(())
    })?;
    Ok(NewSession { token, session })
}

/// Records a refused login (`auth.login` `denied`) with the attempted username escaped.
pub fn record_denied_login(
    conn: &mut impl Transact,
    attempted_username: &str,
    kind: TokenKind,
    source: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let shown = escape_untrusted(attempted_username);
    conn.write(|tx| {
        store::audit::append(
            tx,
            &NewEvent {
                time: now,
                actor: "anonymous".to_owned(),
                source: source.to_owned(),
                action: "auth.login".to_owned(),
                object: format!("user:{shown}"),
                outcome: Outcome::Denied,
                reason: reason.to_owned(),
                details: json!({ "kind": kind.as_str(), "attempted_username": shown }),
            },
        )?;
        Ok(())
    })
}

/// The live session or token whose secret is `token`, if any: not expired,
/// not revoked, and of the kind its prefix says.
pub fn authenticate(
    conn: &impl Sql,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Session>, StoreError> {
    let kind = if token.starts_with(SESSION_TOKEN_PREFIX) {
        TokenKind::WebSession
    } else if token.starts_with(API_TOKEN_PREFIX) {
        TokenKind::Api
    } else {
        return Ok(None);
    };
    if token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let Some(row) = auth_tokens::find_active_by_hash(conn, &hash_token(token), now)? else {
        return Ok(None);
    };
    if row.kind != kind {
        return Ok(None);
    }
    session_of(row).map(Some)
}

fn session_of(row: TokenRow) -> Result<Session, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("auth_tokens {}: {what}", row.id));
    let identity = Identity::new(&row.issuer, &row.subject).map_err(|e| corrupt(e.to_string()))?;
    let username = Username::parse(&row.username).map_err(|e| corrupt(e.to_string()))?;
    let names: Vec<String> =
        serde_json::from_str(&row.groups).map_err(|e| corrupt(e.to_string()))?;
    let groups = names
        .iter()
        .map(|g| GroupName::parse(g))
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let expires_at = DateTime::parse_from_rfc3339(&row.expires_at)
        .map_err(|e| corrupt(e.to_string()))?
        .with_timezone(&Utc);
    Ok(Session {
        kind: row.kind,
        user: User {
            identity,
            display_name: shown_name(row.display_name.as_deref(), &username),
            username,
            groups,
        },
        csrf_token: row.csrf_token.clone(),
        expires_at,
        device_login: row.device_login,
        id: row.id,
    })
}

/// The display name kept with a login, or the username where none was kept
/// (rows from before display names were stored) or it is not fit to show.
pub fn shown_name(stored: Option<&str>, username: &Username) -> String {
    stored
        .and_then(crate::auth::identity::claims::display_name)
        .unwrap_or_else(|| username.as_str().to_owned())
}

/// Revokes a session or token and records `auth.logout`.
pub fn logout(
    conn: &mut impl Transact,
    session: &Session,
    source: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.write(|tx| {
        let was_active = auth_tokens::revoke(tx, &session.id, now)?;
        store::audit::append(
            tx,
            &NewEvent {
                time: now,
                actor: actor(&session.user),
                source: source.to_owned(),
                action: "auth.logout".to_owned(),
                object: format!("token:{}", session.id),
                outcome: Outcome::Success,
                reason: if was_active {
                    "logout"
                } else {
                    "logout (already revoked)"
                }
                .to_owned(),
                details: json!({ "kind": session.kind.as_str() }),
            },
        )?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Create;

    fn alice() -> User {
        let username = Username::parse("alice").unwrap();
        User {
            identity: Identity::local(&username),
            username,
            display_name: "Alice".to_owned(),
            groups: BTreeSet::from([GroupName::parse("engineers").unwrap()]),
        }
    }

    fn open() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::open(&dir.path().join("t.db"), Create::IfMissing).unwrap();
        (dir, conn)
    }

    #[test]
    fn tokens_are_random_prefixed_and_stored_hashed() {
        let api = new_token(TokenKind::Api);
        let web = new_token(TokenKind::WebSession);
        assert!(
            api.starts_with("tpa_") && !api.starts_with("tpas_"),
            "{api}"
        );
        assert!(web.starts_with("tpas_"), "{web}");
        assert_eq!(api.len(), 4 + 43, "32 bytes base64url without padding");
        assert!(
            api[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(new_token(TokenKind::Api), api);
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );

        let (_dir, mut conn) = open();
        let now = Utc::now();
        let ttl = HumanDuration::parse("1h").unwrap();
        let new = create(&mut conn, &alice(), TokenKind::Api, ttl, "127.0.0.1", now).unwrap();
        let stored: Vec<String> = conn
            .prepare("SELECT id || token_hash || coalesce(csrf_token, '') FROM auth_tokens")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert!(
            !stored[0].contains(&new.token[4..]),
            "the secret is not stored"
        );
        assert!(stored[0].contains(&hash_token(&new.token)));
        assert!(!format!("{new:?}").contains(&new.token), "Debug redacts");
    }

    // issue 15: sign-in, lookup, expiry and logout run through the engine
    // types on both engines alike.
    #[test]
    fn lookup_expiry_revocation_and_kind() {
        for (engine, conn, _dir) in crate::store::engine::test_engines() {
            lookup_expiry_revocation_and_kind_on(conn);
            eprintln!("{engine:?}: ok");
        }
    }

    fn lookup_expiry_revocation_and_kind_on(mut conn: crate::store::Conn) {
        let now = Utc::now();
        let ttl = HumanDuration::parse("1h").unwrap();
        let web = create(&mut conn, &alice(), TokenKind::WebSession, ttl, "ip", now).unwrap();
        let found = authenticate(&conn, &web.token, now).unwrap().unwrap();
        assert_eq!(found.id, web.session.id);
        assert_eq!(found.user.identity, alice().identity);
        assert_eq!(found.user.groups, alice().groups);
        assert_eq!(found.csrf_token, web.session.csrf_token);
        assert!(found.csrf_token.as_ref().is_some_and(|c| c.len() >= 43));
        assert_eq!(found.expires_at, web.session.expires_at);
        assert_eq!(
            found.expires_at,
            (now + TimeDelta::hours(1)).trunc_subsecs(6)
        );

        // Expired at its end.
        let end = found.expires_at;
        assert!(
            authenticate(&conn, &web.token, end - TimeDelta::microseconds(1))
                .unwrap()
                .is_some()
        );
        assert!(authenticate(&conn, &web.token, end).unwrap().is_none());
        // A session token with the API prefix, or altered, or huge, is nobody.
        let swapped = web.token.replacen("tpas_", "tpa_", 1);
        assert!(authenticate(&conn, &swapped, now).unwrap().is_none());
        let mut altered = web.token.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(authenticate(&conn, &altered, now).unwrap().is_none());
        assert!(
            authenticate(&conn, &"tpas_x".repeat(100), now)
                .unwrap()
                .is_none()
        );
        assert!(authenticate(&conn, "", now).unwrap().is_none());

        logout(&mut conn, &found, "ip", now).unwrap();
        assert!(authenticate(&conn, &web.token, now).unwrap().is_none());
        let actions: Vec<(String, String)> = crate::store::sql::Sql::query_vec(
            &conn,
            "SELECT action, outcome FROM audit_events ORDER BY seq",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
        assert_eq!(
            actions,
            [
                ("auth.login".into(), "success".into()),
                ("auth.logout".into(), "success".into())
            ]
        );
    }

    #[test]
    fn denied_logins_escape_the_username() {
        let (_dir, mut conn) = open();
        record_denied_login(
            &mut conn,
            "evil\n\u{1b}[31m",
            TokenKind::Api,
            "10.0.0.1",
            "invalid credentials",
            Utc::now(),
        )
        .unwrap();
        let (object, source): (String, String) = conn
            .query_row("SELECT object, source FROM audit_events", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(object, "user:evil\\n\\u{1b}[31m");
        assert_eq!(source, "10.0.0.1");
        assert_eq!(escape_untrusted(&"a".repeat(100)).chars().count(), 65);
    }
}
