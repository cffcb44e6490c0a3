//! The `cli_consents` table: `tpa-ssh login` (loopback) logins whose user
//! is known and that wait for the person's Approve or Deny in the browser.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::StoreError;
use tpa_core::audit::format_time;

/// Rows are kept this long after their expiry (a late click hears "expired").
const KEEP_EXPIRED: TimeDelta = TimeDelta::hours(1);

/// One consent, keyed by the SHA-256 of the id in its page's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliConsent {
    /// Hex SHA-256 of the consent id.
    pub id_hash: String,
    /// The public id of the web session it is bound to.
    pub session_id: String,
    /// The verified user: identity issuer.
    pub issuer: String,
    /// Identity subject.
    pub subject: String,
    /// Username.
    pub username: String,
    /// JSON array of the user's groups at login.
    pub groups: String,
    /// The CLI's checked loopback redirect URI.
    pub redirect_uri: String,
    /// The CLI's PKCE S256 challenge.
    pub code_challenge: String,
    /// The address that opened `/cli/login`.
    pub client_source: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// `approved` or `denied`, once decided.
    pub decision: Option<String>,
}

/// Inserts a consent after deleting rows long expired.
pub fn insert(
    tx: &Transaction<'_>,
    row: &CliConsent,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM cli_consents WHERE expires_at <= ?1",
        params![format_time(now - KEEP_EXPIRED)],
    )?;
    tx.execute(
        "INSERT INTO cli_consents (id_hash, session_id, issuer, subject, username, groups,
             redirect_uri, code_challenge, client_source, created_at, expires_at, decision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            row.id_hash,
            row.session_id,
            row.issuer,
            row.subject,
            row.username,
            row.groups,
            row.redirect_uri,
            row.code_challenge,
            row.client_source,
            row.created_at,
            row.expires_at,
            row.decision,
        ],
    )?;
    Ok(())
}

/// Consents waiting for a decision at `now`.
pub fn count_waiting(conn: &Connection, now: DateTime<Utc>) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM cli_consents WHERE decision IS NULL AND expires_at > ?1",
        params![format_time(now)],
        |r| r.get(0),
    )?)
}

/// The consent of `id_hash`.
pub fn get(conn: &Connection, id_hash: &str) -> Result<Option<CliConsent>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id_hash, session_id, issuer, subject, username, groups, redirect_uri,
                    code_challenge, client_source, created_at, expires_at, decision
             FROM cli_consents WHERE id_hash = ?1",
            params![id_hash],
            |r| {
                Ok(CliConsent {
                    id_hash: r.get(0)?,
                    session_id: r.get(1)?,
                    issuer: r.get(2)?,
                    subject: r.get(3)?,
                    username: r.get(4)?,
                    groups: r.get(5)?,
                    redirect_uri: r.get(6)?,
                    code_challenge: r.get(7)?,
                    client_source: r.get(8)?,
                    created_at: r.get(9)?,
                    expires_at: r.get(10)?,
                    decision: r.get(11)?,
                })
            },
        )
        .optional()?)
}

/// Records the decision of an undecided consent; `false` when it was
/// already decided (the caller's transaction read it first, so this only
/// guards against a bug).
pub fn decide(
    tx: &Transaction<'_>,
    id_hash: &str,
    approved: bool,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let decision = if approved { "approved" } else { "denied" };
    let changed = tx.execute(
        "UPDATE cli_consents SET decision = ?2, decided_at = ?3
         WHERE id_hash = ?1 AND decision IS NULL",
        params![id_hash, decision, format_time(now)],
    )?;
    Ok(changed == 1)
}
