//! The `device_logins` table: `tpa-ssh login --no-browser` logins waiting
//! for a person to confirm their user code in a browser.

use chrono::{DateTime, TimeDelta, Utc};

use super::StoreError;
use super::sql::{Engine, Row, Sql};
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

fn from_row(r: &Row<'_, '_>) -> Result<DeviceLogin, StoreError> {
    Ok(DeviceLogin {
        device_hash: r.get(0)?,
        user_code_hash: r.get(1)?,
        client_source: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        interval_secs: r.get(5)?,
        last_poll_at: r.get(6)?,
        status: DeviceStatus::parse(&r.get::<String>(7)?)?,
        issuer: r.get(8)?,
        subject: r.get(9)?,
        username: r.get(10)?,
        groups: r.get(11)?,
        display_name: r.get(12)?,
    })
}

fn find(conn: &impl Sql, column: &str, hash: &str) -> Result<Option<DeviceLogin>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM device_logins WHERE {column} = ?1");
    // The workflow reads a login and then moves its status in the same
    // transaction (approved → done hands out the token once). On PostgreSQL
    // the row lock makes a second replica's read wait for that commit and
    // see the new status; SQLite's write transaction excludes other writers.
    let sql = match conn.engine() {
        Engine::Sqlite => sql,
        Engine::Postgres => format!("{sql} FOR UPDATE"),
    };
    conn.query_opt(&sql, &[&hash], from_row)
}

/// Inserts a new login after deleting rows long expired. `Ok(false)` when
/// the user code is already taken (the caller draws another).
pub fn insert(tx: &impl Sql, row: &DeviceLogin, now: DateTime<Utc>) -> Result<bool, StoreError> {
    tx.execute(
        "DELETE FROM device_logins WHERE expires_at <= ?1",
        &[&format_time(now - KEEP_EXPIRED)],
    )?;
    let inserted = tx.execute(
        "INSERT INTO device_logins (device_hash, user_code_hash, client_source, created_at,
             expires_at, interval_secs, last_poll_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT DO NOTHING",
        &[
            &row.device_hash,
            &row.user_code_hash,
            &row.client_source,
            &row.created_at,
            &row.expires_at,
            &row.interval_secs,
            &row.last_poll_at,
            &row.status.as_str(),
        ],
    )?;
    Ok(inserted == 1)
}

/// Logins waiting for a person at `now`.
pub fn count_pending(conn: &impl Sql, now: DateTime<Utc>) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT count(*) FROM device_logins WHERE status = 'pending' AND expires_at > ?1",
        &[&format_time(now)],
        |r| r.get(0),
    )
}

/// The login of a user code.
pub fn by_user_code(
    conn: &impl Sql,
    user_code_hash: &str,
) -> Result<Option<DeviceLogin>, StoreError> {
    find(conn, "user_code_hash", user_code_hash)
}

/// The login of a device code.
pub fn by_device_code(
    conn: &impl Sql,
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
    tx: &impl Sql,
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
        &[
            &device_hash,
            &status.as_str(),
            &format_time(now),
            &issuer,
            &subject,
            &username,
            &groups,
            &display_name,
        ],
    )?;
    Ok(())
}

/// Records a poll at `now` with the interval the next one must keep.
pub fn set_polled(
    tx: &impl Sql,
    device_hash: &str,
    interval_secs: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE device_logins SET last_poll_at = ?2, interval_secs = ?3 WHERE device_hash = ?1",
        &[&device_hash, &format_time(now), &interval_secs],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::{Conn, pg};

    fn login(device: &str, user_code: &str, now: DateTime<Utc>) -> DeviceLogin {
        DeviceLogin {
            device_hash: device.into(),
            user_code_hash: user_code.into(),
            client_source: "127.0.0.1".into(),
            created_at: format_time(now),
            expires_at: format_time(now + TimeDelta::minutes(10)),
            interval_secs: 5,
            last_poll_at: None,
            status: DeviceStatus::Pending,
            issuer: None,
            subject: None,
            username: None,
            groups: None,
            display_name: None,
        }
    }

    const ALICE: DecidedBy<'static> = DecidedBy {
        issuer: "tpa:local",
        subject: "alice",
        username: "alice",
        display_name: "Alice",
        groups: "[\"engineers\"]",
    };

    // issue 15: a device login goes pending → approved (with its user) →
    // done; a user code is taken by one login at a time, and long-expired
    // rows go at the next insert; on both engines.
    #[test]
    fn a_device_login_is_approved_and_spent() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            let a = login("dev-a", "user-a", now);
            assert!(conn.write(|tx| insert(tx, &a, now)).unwrap(), "{engine:?}");
            let clash = login("dev-b", "user-a", now);
            assert!(
                !conn.write(|tx| insert(tx, &clash, now)).unwrap(),
                "{engine:?}: a user code in use is refused, not an error"
            );
            assert_eq!(count_pending(&conn, now).unwrap(), 1, "{engine:?}");
            assert_eq!(by_user_code(&conn, "user-a").unwrap(), Some(a.clone()));
            assert_eq!(by_device_code(&conn, "nope").unwrap(), None, "{engine:?}");

            let later = now + TimeDelta::seconds(7);
            conn.write(|tx| set_polled(tx, "dev-a", 10, later)).unwrap();
            conn.write(|tx| set_status(tx, "dev-a", DeviceStatus::Approved, Some(ALICE), later))
                .unwrap();
            conn.write(|tx| set_status(tx, "dev-a", DeviceStatus::Done, None, later))
                .unwrap();
            let done = by_device_code(&conn, "dev-a").unwrap().unwrap();
            assert_eq!(
                done,
                DeviceLogin {
                    interval_secs: 10,
                    last_poll_at: Some(format_time(later)),
                    status: DeviceStatus::Done,
                    issuer: Some("tpa:local".into()),
                    subject: Some("alice".into()),
                    username: Some("alice".into()),
                    groups: Some("[\"engineers\"]".into()),
                    display_name: Some("Alice".into()),
                    ..a.clone()
                },
                "{engine:?}: the approving user is kept when the login is spent"
            );
            assert_eq!(count_pending(&conn, later).unwrap(), 0, "{engine:?}");

            // Kept an hour past expiry (a late poll hears "expired"), then purged.
            let gone = now + TimeDelta::minutes(10) + KEEP_EXPIRED;
            let b = login("dev-b", "user-b", gone);
            assert!(conn.write(|tx| insert(tx, &b, gone)).unwrap());
            assert_eq!(by_device_code(&conn, "dev-a").unwrap(), None, "{engine:?}");
            let bad = conn.execute(
                "UPDATE device_logins SET status = 'stolen' WHERE device_hash = 'dev-b'",
                &[],
            );
            assert!(bad.is_err(), "{engine:?}: CHECK constraint on status");
        }
    }

    // issue 15: two replicas polling an approved device login at once: the
    // second reads after the first spent it, so one token is handed out.
    #[test]
    fn concurrent_polls_on_postgres_spend_a_device_code_once() {
        let (options, mut conn) = pg::test_database();
        let now = Utc::now();
        conn.write(|tx| {
            insert(tx, &login("dev", "user", now), now)?;
            set_status(tx, "dev", DeviceStatus::Approved, Some(ALICE), now)
        })
        .unwrap();
        let first = pg::connect(&options).unwrap();
        let tx = first.begin().unwrap();
        let seen = by_device_code(&tx, "dev").unwrap().unwrap();
        assert_eq!(seen.status, DeviceStatus::Approved);
        let second = std::thread::spawn(move || {
            let mut conn = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
            conn.write(|tx| by_device_code(tx, "dev")).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        set_status(&tx, "dev", DeviceStatus::Done, None, now).unwrap();
        tx.commit().unwrap();
        let seen = second.join().unwrap().unwrap();
        assert_eq!(seen.status, DeviceStatus::Done);
    }
}
