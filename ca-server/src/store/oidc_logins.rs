//! The `oidc_logins` table (OpenID Connect logins in progress, each usable
//! once) and the `cli_login_codes` table (one-time codes for `tpa-ssh login`).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::StoreError;
use tpa_core::audit::format_time;

/// A login in progress, keyed by the SHA-256 of its `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// Hex SHA-256 of `state`.
    pub state_hash: String,
    /// Hex SHA-256 of the browser's binding cookie.
    pub browser_hash: String,
    /// The connector's name.
    pub connector: String,
    /// The `nonce` sent (server-side only, short-lived).
    pub nonce: String,
    /// The PKCE verifier (server-side only, short-lived).
    pub pkce_verifier: String,
    /// Where the browser goes afterwards (a checked local path).
    pub next_path: String,
    /// For a CLI login: the loopback redirect URI.
    pub cli_redirect_uri: Option<String>,
    /// For a CLI login: the CLI's PKCE S256 challenge.
    pub cli_code_challenge: Option<String>,
    /// For a CLI login: the address that opened `/cli/login`.
    pub cli_source: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// RFC 3339 UTC, once the callback used it.
    pub used_at: Option<String>,
}

/// Inserts a pending login after deleting expired rows.
pub fn insert(
    tx: &Transaction<'_>,
    row: &PendingLogin,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM oidc_logins WHERE expires_at <= ?1",
        params![format_time(now)],
    )?;
    tx.execute(
        "INSERT INTO oidc_logins (state_hash, browser_hash, connector, nonce, pkce_verifier,
             next_path, cli_redirect_uri, cli_code_challenge, created_at, expires_at, used_at,
             cli_source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            row.state_hash,
            row.browser_hash,
            row.connector,
            row.nonce,
            row.pkce_verifier,
            row.next_path,
            row.cli_redirect_uri,
            row.cli_code_challenge,
            row.created_at,
            row.expires_at,
            row.used_at,
            row.cli_source,
        ],
    )?;
    Ok(())
}

/// Logins in progress (not expired, not used) at `now`.
pub fn count_pending(conn: &Connection, now: DateTime<Utc>) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM oidc_logins WHERE used_at IS NULL AND expires_at > ?1",
        params![format_time(now)],
        |r| r.get(0),
    )?)
}

/// The pending login of `state_hash`, marked used at `now` in the same
/// transaction, whatever its state: the caller decides (already used,
/// expired, other browser) from the returned row.
pub fn take(
    tx: &Transaction<'_>,
    state_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<PendingLogin>, StoreError> {
    let row = tx
        .query_row(
            "SELECT state_hash, browser_hash, connector, nonce, pkce_verifier, next_path,
                    cli_redirect_uri, cli_code_challenge, created_at, expires_at, used_at,
                    cli_source
             FROM oidc_logins WHERE state_hash = ?1",
            params![state_hash],
            |r| {
                Ok(PendingLogin {
                    state_hash: r.get(0)?,
                    browser_hash: r.get(1)?,
                    connector: r.get(2)?,
                    nonce: r.get(3)?,
                    pkce_verifier: r.get(4)?,
                    next_path: r.get(5)?,
                    cli_redirect_uri: r.get(6)?,
                    cli_code_challenge: r.get(7)?,
                    created_at: r.get(8)?,
                    expires_at: r.get(9)?,
                    used_at: r.get(10)?,
                    cli_source: r.get(11)?,
                })
            },
        )
        .optional()?;
    if row.as_ref().is_some_and(|r| r.used_at.is_none()) {
        tx.execute(
            "UPDATE oidc_logins SET used_at = ?2 WHERE state_hash = ?1 AND used_at IS NULL",
            params![state_hash, format_time(now)],
        )?;
    }
    Ok(row)
}

/// A one-time code for `tpa-ssh login`, keyed by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliCode {
    /// Hex SHA-256 of the code.
    pub code_hash: String,
    /// The CLI's PKCE S256 challenge (base64url).
    pub code_challenge: String,
    /// The loopback redirect URI the code was sent to.
    pub redirect_uri: String,
    /// The user's identity issuer.
    pub issuer: String,
    /// The user's identity subject.
    pub subject: String,
    /// The user's username.
    pub username: String,
    /// The name shown to people.
    pub display_name: Option<String>,
    /// JSON array of the user's groups at login.
    pub groups: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// RFC 3339 UTC, once exchanged (or tried).
    pub used_at: Option<String>,
}

/// Inserts a CLI code after deleting expired ones.
pub fn insert_cli_code(
    tx: &Transaction<'_>,
    row: &CliCode,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM cli_login_codes WHERE expires_at <= ?1",
        params![format_time(now)],
    )?;
    tx.execute(
        "INSERT INTO cli_login_codes (code_hash, code_challenge, redirect_uri, issuer, subject,
             username, groups, created_at, expires_at, used_at, display_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            row.code_hash,
            row.code_challenge,
            row.redirect_uri,
            row.issuer,
            row.subject,
            row.username,
            row.groups,
            row.created_at,
            row.expires_at,
            row.used_at,
            row.display_name,
        ],
    )?;
    Ok(())
}

/// The CLI code of `code_hash`, marked used at `now` (one attempt per code).
pub fn take_cli_code(
    tx: &Transaction<'_>,
    code_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<CliCode>, StoreError> {
    let row = tx
        .query_row(
            "SELECT code_hash, code_challenge, redirect_uri, issuer, subject, username, groups,
                    created_at, expires_at, used_at, display_name
             FROM cli_login_codes WHERE code_hash = ?1",
            params![code_hash],
            |r| {
                Ok(CliCode {
                    code_hash: r.get(0)?,
                    code_challenge: r.get(1)?,
                    redirect_uri: r.get(2)?,
                    issuer: r.get(3)?,
                    subject: r.get(4)?,
                    username: r.get(5)?,
                    groups: r.get(6)?,
                    created_at: r.get(7)?,
                    expires_at: r.get(8)?,
                    used_at: r.get(9)?,
                    display_name: r.get(10)?,
                })
            },
        )
        .optional()?;
    if row.as_ref().is_some_and(|r| r.used_at.is_none()) {
        tx.execute(
            "UPDATE cli_login_codes SET used_at = ?2 WHERE code_hash = ?1 AND used_at IS NULL",
            params![code_hash, format_time(now)],
        )?;
    }
    Ok(row)
}
