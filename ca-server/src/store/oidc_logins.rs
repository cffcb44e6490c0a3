//! The `oidc_logins` table (OpenID Connect logins in progress, each usable
//! once) and the `cli_login_codes` table (one-time codes for `tpa-ssh login`).

use chrono::{DateTime, Utc};

use super::StoreError;
use super::sql::{Engine, Row, Sql};
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
pub fn insert(tx: &impl Sql, row: &PendingLogin, now: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM oidc_logins WHERE expires_at <= ?1",
        &[&format_time(now)],
    )?;
    tx.execute(
        "INSERT INTO oidc_logins (state_hash, browser_hash, connector, nonce, pkce_verifier,
             next_path, cli_redirect_uri, cli_code_challenge, created_at, expires_at, used_at,
             cli_source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        &[
            &row.state_hash,
            &row.browser_hash,
            &row.connector,
            &row.nonce,
            &row.pkce_verifier,
            &row.next_path,
            &row.cli_redirect_uri,
            &row.cli_code_challenge,
            &row.created_at,
            &row.expires_at,
            &row.used_at,
            &row.cli_source,
        ],
    )?;
    Ok(())
}

/// Logins in progress (not expired, not used) at `now`.
pub fn count_pending(conn: &impl Sql, now: DateTime<Utc>) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT count(*) FROM oidc_logins WHERE used_at IS NULL AND expires_at > ?1",
        &[&format_time(now)],
        |r| r.get(0),
    )
}

const TAKE_LOGIN: &str =
    "SELECT state_hash, browser_hash, connector, nonce, pkce_verifier, next_path,
        cli_redirect_uri, cli_code_challenge, created_at, expires_at, used_at, cli_source
     FROM oidc_logins WHERE state_hash = ?1";

fn login_from(r: &Row<'_, '_>) -> Result<PendingLogin, StoreError> {
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
}

/// The pending login of `state_hash`, marked used at `now` in the same
/// transaction, whatever its state: the caller decides (already used,
/// expired, other browser) from the returned row.
pub fn take(
    tx: &impl Sql,
    state_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<PendingLogin>, StoreError> {
    // `FOR UPDATE` on PostgreSQL: two replicas taking the same state wait
    // for each other, and the second sees it used. SQLite's write
    // transaction already excludes every other writer.
    let sql = match tx.engine() {
        Engine::Sqlite => TAKE_LOGIN.to_owned(),
        Engine::Postgres => format!("{TAKE_LOGIN} FOR UPDATE"),
    };
    let row = tx.query_opt(&sql, &[&state_hash], login_from)?;
    if row.as_ref().is_some_and(|r| r.used_at.is_none()) {
        tx.execute(
            "UPDATE oidc_logins SET used_at = ?2 WHERE state_hash = ?1 AND used_at IS NULL",
            &[&state_hash, &format_time(now)],
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
pub fn insert_cli_code(tx: &impl Sql, row: &CliCode, now: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM cli_login_codes WHERE expires_at <= ?1",
        &[&format_time(now)],
    )?;
    tx.execute(
        "INSERT INTO cli_login_codes (code_hash, code_challenge, redirect_uri, issuer, subject,
             username, groups, created_at, expires_at, used_at, display_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        &[
            &row.code_hash,
            &row.code_challenge,
            &row.redirect_uri,
            &row.issuer,
            &row.subject,
            &row.username,
            &row.groups,
            &row.created_at,
            &row.expires_at,
            &row.used_at,
            &row.display_name,
        ],
    )?;
    Ok(())
}

const TAKE_CODE: &str = "SELECT code_hash, code_challenge, redirect_uri, issuer, subject, username,
        groups, created_at, expires_at, used_at, display_name
     FROM cli_login_codes WHERE code_hash = ?1";

/// The CLI code of `code_hash`, marked used at `now` (one attempt per code).
pub fn take_cli_code(
    tx: &impl Sql,
    code_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<CliCode>, StoreError> {
    let sql = match tx.engine() {
        // As in `take`: the row lock makes a second replica wait and see it used.
        Engine::Sqlite => TAKE_CODE.to_owned(),
        Engine::Postgres => format!("{TAKE_CODE} FOR UPDATE"),
    };
    let row = tx.query_opt(&sql, &[&code_hash], |r| {
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
    })?;
    if row.as_ref().is_some_and(|r| r.used_at.is_none()) {
        tx.execute(
            "UPDATE cli_login_codes SET used_at = ?2 WHERE code_hash = ?1 AND used_at IS NULL",
            &[&code_hash, &format_time(now)],
        )?;
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::{Conn, pg};

    fn login(state_hash: &str, now: DateTime<Utc>) -> PendingLogin {
        PendingLogin {
            state_hash: state_hash.into(),
            browser_hash: "browser".into(),
            connector: "sso".into(),
            nonce: "nonce".into(),
            pkce_verifier: "verifier".into(),
            next_path: "/".into(),
            cli_redirect_uri: Some("http://127.0.0.1:4000/callback".into()),
            cli_code_challenge: Some("challenge".into()),
            cli_source: Some("127.0.0.1".into()),
            created_at: format_time(now),
            expires_at: format_time(now + TimeDelta::minutes(10)),
            used_at: None,
        }
    }

    fn code(code_hash: &str, now: DateTime<Utc>) -> CliCode {
        CliCode {
            code_hash: code_hash.into(),
            code_challenge: "challenge".into(),
            redirect_uri: "http://127.0.0.1:4000/callback".into(),
            issuer: "https://sso.example".into(),
            subject: "alice-sub".into(),
            username: "alice".into(),
            display_name: Some("Alice".into()),
            groups: "[]".into(),
            created_at: format_time(now),
            expires_at: format_time(now + TimeDelta::minutes(1)),
            used_at: None,
        }
    }

    // issue 15: a login state is taken once: the first take returns it
    // unused and marks it, every later take sees it used; expired rows are
    // purged at the next insert; on both engines.
    #[test]
    fn a_login_state_is_used_once() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            let old = login("old", now - TimeDelta::hours(1));
            conn.write(|tx| insert(tx, &old, now - TimeDelta::hours(1)))
                .unwrap();
            conn.write(|tx| insert(tx, &login("s", now), now)).unwrap();
            assert_eq!(count_pending(&conn, now).unwrap(), 1, "{engine:?}");
            let first = conn.write(|tx| take(tx, "old", now)).unwrap();
            assert_eq!(first, None, "{engine:?}: purged when expired");

            let first = conn.write(|tx| take(tx, "s", now)).unwrap();
            assert_eq!(first, Some(login("s", now)), "{engine:?}");
            let again = conn.write(|tx| take(tx, "s", now)).unwrap().unwrap();
            assert_eq!(again.used_at, Some(format_time(now)), "{engine:?}");
            assert_eq!(count_pending(&conn, now).unwrap(), 0, "{engine:?}");
            assert_eq!(conn.write(|tx| take(tx, "none", now)).unwrap(), None);
            let twice: Result<(), StoreError> = conn.write(|tx| insert(tx, &login("s", now), now));
            assert!(twice.is_err(), "{engine:?}: a state hash is stored once");
        }
    }

    // issue 15: a CLI login code is exchanged once, on both engines.
    #[test]
    fn a_cli_code_is_exchanged_once() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            conn.write(|tx| insert_cli_code(tx, &code("c", now), now))
                .unwrap();
            let first = conn.write(|tx| take_cli_code(tx, "c", now)).unwrap();
            assert_eq!(first, Some(code("c", now)), "{engine:?}");
            let again = conn.write(|tx| take_cli_code(tx, "c", now)).unwrap();
            assert_eq!(again.unwrap().used_at, Some(format_time(now)), "{engine:?}");
            // Expired codes go at the next insert.
            let later = now + TimeDelta::minutes(2);
            conn.write(|tx| insert_cli_code(tx, &code("d", later), later))
                .unwrap();
            let gone = conn.write(|tx| take_cli_code(tx, "c", later)).unwrap();
            assert_eq!(gone, None, "{engine:?}");
        }
    }

    // issue 15: two replicas taking the same login state at once: the
    // second waits for the first's commit and sees the state used, so a
    // state cannot complete two logins.
    #[test]
    fn concurrent_takes_on_postgres_hand_a_state_out_once() {
        let (options, mut conn) = pg::test_database();
        let now = Utc::now();
        conn.write(|tx| insert(tx, &login("s", now), now)).unwrap();
        let first = pg::connect(&options).unwrap();
        let tx = first.begin().unwrap();
        assert!(take(&tx, "s", now).unwrap().unwrap().used_at.is_none());
        let second = std::thread::spawn(move || {
            let mut conn = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
            conn.write(|tx| take(tx, "s", now)).unwrap()
        });
        // The second take is blocked on the row lock until this commits.
        std::thread::sleep(std::time::Duration::from_millis(300));
        tx.commit().unwrap();
        let seen = second.join().unwrap().unwrap();
        assert_eq!(seen.used_at, Some(format_time(now)));
    }
}
