//! The `device_logins` table: `tpa-ssh login --no-browser` logins waiting
//! for a person to confirm their user code in a browser.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::StoreError;
use tpa_core::audit::format_time;

/// Rows are kept this long after their expiry, so a late poll hears "expired".
const KEEP_EXPIRED: TimeDelta = TimeDelta::hours(1);

/// Where a device login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Waiting for the person to confirm the code.
    Pending,
    /// Confirmed; the next poll gets the token.
    Approved,
    /// Refused by the person.
    Denied,
    /// Not confirmed in time.
    Expired,
    /// The token was handed out; the device code is spent.
    Done,
}

impl DeviceStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Expired => "expired",
            DeviceStatus::Done => "done",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "pending" => DeviceStatus::Pending,
            "approved" => DeviceStatus::Approved,
            "denied" => DeviceStatus::Denied,
            "expired" => DeviceStatus::Expired,
            "done" => DeviceStatus::Done,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "device_logins: unknown status {other:?}"
                )));
            }
        })
    }
}

/// One device login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLogin {
    /// Hex SHA-256 of the device code.
    pub device_hash: String,
    /// Hex SHA-256 of the normalised user code.
    pub user_code_hash: String,
    /// The address `tpa-ssh` started the login from (shown on the confirmation page).
    pub client_source: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// The poll interval the CLI must keep, in seconds.
    pub interval_secs: i64,
    /// RFC 3339 UTC of the last poll.
    pub last_poll_at: Option<String>,
    /// Where it stands.
    pub status: DeviceStatus,
    /// The user who confirmed it (approved only): issuer.
    pub issuer: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// The name shown to people.
    pub display_name: Option<String>,
    /// JSON array of the user's groups.
    pub groups: Option<String>,
}

const COLUMNS: &str = "device_hash, user_code_hash, client_source, created_at, expires_at,
     interval_secs, last_poll_at, status, issuer, subject, username, groups, display_name";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(DeviceLogin, String)> {
    Ok((
        DeviceLogin {
            device_hash: r.get(0)?,
            user_code_hash: r.get(1)?,
            client_source: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            interval_secs: r.get(5)?,
            last_poll_at: r.get(6)?,
            status: DeviceStatus::Pending,
            issuer: r.get(8)?,
            subject: r.get(9)?,
            username: r.get(10)?,
            groups: r.get(11)?,
            display_name: r.get(12)?,
        },
        r.get(7)?,
    ))
}

fn find(conn: &Connection, column: &str, hash: &str) -> Result<Option<DeviceLogin>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM device_logins WHERE {column} = ?1");
    let found = conn.query_row(&sql, params![hash], from_row).optional()?;
    found
        .map(|(mut row, status)| {
            row.status = DeviceStatus::parse(&status)?;
            Ok(row)
        })
        .transpose()
}

/// Inserts a new login after deleting rows long expired. `Ok(false)` when
/// the user code is already taken (the caller draws another).
pub fn insert(
    tx: &Transaction<'_>,
    row: &DeviceLogin,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    tx.execute(
        "DELETE FROM device_logins WHERE expires_at <= ?1",
        params![format_time(now - KEEP_EXPIRED)],
    )?;
    let inserted = tx.execute(
        "INSERT INTO device_logins (device_hash, user_code_hash, client_source, created_at,
             expires_at, interval_secs, last_poll_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT DO NOTHING",
        params![
            row.device_hash,
            row.user_code_hash,
            row.client_source,
            row.created_at,
            row.expires_at,
            row.interval_secs,
            row.last_poll_at,
            row.status.as_str(),
        ],
    )?;
    Ok(inserted == 1)
}

/// Logins waiting for a person at `now`.
pub fn count_pending(conn: &Connection, now: DateTime<Utc>) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM device_logins WHERE status = 'pending' AND expires_at > ?1",
        params![format_time(now)],
        |r| r.get(0),
    )?)
}

/// The login of a user code.
pub fn by_user_code(
    conn: &Connection,
    user_code_hash: &str,
) -> Result<Option<DeviceLogin>, StoreError> {
    find(conn, "user_code_hash", user_code_hash)
}

/// The login of a device code.
pub fn by_device_code(
    conn: &Connection,
    device_hash: &str,
) -> Result<Option<DeviceLogin>, StoreError> {
    find(conn, "device_hash", device_hash)
}

/// The user who approved a device login, as stored.
#[derive(Debug, Clone, Copy)]
pub struct DecidedBy<'a> {
    /// Identity issuer.
    pub issuer: &'a str,
    /// Identity subject.
    pub subject: &'a str,
    /// Username.
    pub username: &'a str,
    /// The name shown to people.
    pub display_name: &'a str,
    /// JSON array of the user's groups.
    pub groups: &'a str,
}

/// Sets the status of a login; with a user for `approved`.
pub fn set_status(
    tx: &Transaction<'_>,
    device_hash: &str,
    status: DeviceStatus,
    user: Option<DecidedBy<'_>>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let issuer = user.map(|u| u.issuer);
    let subject = user.map(|u| u.subject);
    let username = user.map(|u| u.username);
    let display_name = user.map(|u| u.display_name);
    let groups = user.map(|u| u.groups);
    tx.execute(
        "UPDATE device_logins
         SET status = ?2, decided_at = coalesce(decided_at, ?3),
             issuer = coalesce(?4, issuer), subject = coalesce(?5, subject),
             username = coalesce(?6, username), groups = coalesce(?7, groups),
             display_name = coalesce(?8, display_name)
         WHERE device_hash = ?1",
        params![
            device_hash,
            status.as_str(),
            format_time(now),
            issuer,
            subject,
            username,
            groups,
            display_name
        ],
    )?;
    Ok(())
}

/// Records a poll at `now` with the interval the next one must keep.
pub fn set_polled(
    tx: &Transaction<'_>,
    device_hash: &str,
    interval_secs: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE device_logins SET last_poll_at = ?2, interval_secs = ?3 WHERE device_hash = ?1",
        params![device_hash, format_time(now), interval_secs],
    )?;
    Ok(())
}
