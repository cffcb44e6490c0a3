//! The `cli_consents` table: `tpa-ssh login` (loopback) logins whose user
//! is known and that wait for the person's Approve or Deny in the browser.

use chrono::{DateTime, TimeDelta, Utc};

use super::StoreError;
use super::sql::Sql;
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
pub fn insert(tx: &impl Sql, row: &CliConsent, now: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM cli_consents WHERE expires_at <= ?1",
        &[&format_time(now - KEEP_EXPIRED)],
    )?;
    tx.execute(
        "INSERT INTO cli_consents (id_hash, session_id, issuer, subject, username, groups,
             redirect_uri, code_challenge, client_source, created_at, expires_at, decision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        &[
            &row.id_hash,
            &row.session_id,
            &row.issuer,
            &row.subject,
            &row.username,
            &row.groups,
            &row.redirect_uri,
            &row.code_challenge,
            &row.client_source,
            &row.created_at,
            &row.expires_at,
            &row.decision,
        ],
    )?;
    Ok(())
}

/// Consents waiting for a decision at `now`.
pub fn count_waiting(conn: &impl Sql, now: DateTime<Utc>) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT count(*) FROM cli_consents WHERE decision IS NULL AND expires_at > ?1",
        &[&format_time(now)],
        |r| r.get(0),
    )
}

/// The consent of `id_hash`.
pub fn get(conn: &impl Sql, id_hash: &str) -> Result<Option<CliConsent>, StoreError> {
    conn.query_opt(
        "SELECT id_hash, session_id, issuer, subject, username, groups, redirect_uri,
                code_challenge, client_source, created_at, expires_at, decision
         FROM cli_consents WHERE id_hash = ?1",
        &[&id_hash],
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
}

/// Records the decision of an undecided consent; `false` when it was
/// already decided. The conditional update is what makes a consent row
/// decide once: on PostgreSQL two replicas may both have read it undecided,
/// and the second update waits for the first's commit and changes nothing.
pub fn decide(
    tx: &impl Sql,
    id_hash: &str,
    approved: bool,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let decision = if approved { "approved" } else { "denied" };
    let changed = tx.execute(
        "UPDATE cli_consents SET decision = ?2, decided_at = ?3
         WHERE id_hash = ?1 AND decision IS NULL",
        &[&id_hash, &decision, &format_time(now)],
    )?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::{Conn, pg};

    fn consent(id_hash: &str, now: DateTime<Utc>) -> CliConsent {
        CliConsent {
            id_hash: id_hash.into(),
            session_id: "ses".into(),
            issuer: "tpa:local".into(),
            subject: "alice".into(),
            username: "alice".into(),
            groups: "[]".into(),
            redirect_uri: "http://127.0.0.1:4000/callback".into(),
            code_challenge: "challenge".into(),
            client_source: "127.0.0.1".into(),
            created_at: format_time(now),
            expires_at: format_time(now + TimeDelta::minutes(5)),
            decision: None,
        }
    }

    // issue 15: a consent row is decided once (the second decision changes
    // nothing), and long-expired rows go at the next insert; on both engines.
    #[test]
    fn a_consent_is_decided_once() {
        for (engine, mut conn, _dir) in test_engines() {
            let now = Utc::now();
            conn.write(|tx| insert(tx, &consent("c", now), now))
                .unwrap();
            assert_eq!(get(&conn, "c").unwrap(), Some(consent("c", now)));
            assert_eq!(count_waiting(&conn, now).unwrap(), 1, "{engine:?}");
            assert!(conn.write(|tx| decide(tx, "c", true, now)).unwrap());
            assert!(
                !conn.write(|tx| decide(tx, "c", false, now)).unwrap(),
                "{engine:?}: decided once"
            );
            assert_eq!(
                get(&conn, "c").unwrap().unwrap().decision.as_deref(),
                Some("approved")
            );
            assert_eq!(count_waiting(&conn, now).unwrap(), 0, "{engine:?}");
            assert!(!conn.write(|tx| decide(tx, "none", true, now)).unwrap());
            let twice: Result<(), StoreError> =
                conn.write(|tx| insert(tx, &consent("c", now), now));
            assert!(twice.is_err(), "{engine:?}: an id hash is stored once");

            let gone = now + TimeDelta::minutes(5) + KEEP_EXPIRED;
            conn.write(|tx| insert(tx, &consent("d", gone), gone))
                .unwrap();
            assert_eq!(get(&conn, "c").unwrap(), None, "{engine:?}");
        }
    }

    // issue 15: two replicas deciding the same consent at once, both having
    // read it undecided: exactly one decision counts.
    #[test]
    fn concurrent_decisions_on_postgres_count_once() {
        let (options, mut conn) = pg::test_database();
        let now = Utc::now();
        conn.write(|tx| insert(tx, &consent("c", now), now))
            .unwrap();
        let first = pg::connect(&options).unwrap();
        let tx = first.begin().unwrap();
        assert!(get(&tx, "c").unwrap().unwrap().decision.is_none());
        assert!(decide(&tx, "c", true, now).unwrap());
        let (read, was_read) = std::sync::mpsc::channel();
        let second = std::thread::spawn(move || {
            let mut conn = Conn::Postgres(Box::new(pg::connect(&options).unwrap()));
            conn.write(|tx| {
                let undecided = get(tx, "c")?.is_some_and(|c| c.decision.is_none());
                read.send(()).unwrap();
                Ok::<_, StoreError>((undecided, decide(tx, "c", false, now)?))
            })
            .unwrap()
        });
        // Commit once the second replica has read the row undecided (and,
        // most likely, is waiting on it in its update).
        was_read
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        tx.commit().unwrap();
        assert_eq!(second.join().unwrap(), (true, false));
        assert_eq!(
            get(&conn, "c").unwrap().unwrap().decision.as_deref(),
            Some("approved")
        );
    }
}
