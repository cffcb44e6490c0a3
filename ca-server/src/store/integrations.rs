//! Issue 17's tables: `identity_emails` (verified emails of OpenID Connect
//! identities), `automated_approvals` (on-call approvals) and
//! `integration_checks` (what on-call and ticket checks found).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tpa_core::{AccessRequest, AutomatedApproval, Identity, RequestId, VerifiedEmail};

use super::StoreError;
use super::sql::Sql;
use tpa_core::audit::format_time;

fn time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("integration time: {e}")))
}

/// Records the email an identity's login verified, or forgets it when the
/// login had none (the latest login decides).
pub fn record_email(
    tx: &impl Sql,
    identity: &Identity,
    email: Option<&VerifiedEmail>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match email {
        Some(email) => tx.execute(
            "INSERT INTO identity_emails (issuer, subject, email, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (issuer, subject) DO UPDATE SET email = excluded.email, updated_at = excluded.updated_at",
            &[&identity.issuer(), &identity.subject(), &email.as_str(), &format_time(now)],
        )?,
        None => tx.execute(
            "DELETE FROM identity_emails WHERE issuer = ?1 AND subject = ?2",
            &[&identity.issuer(), &identity.subject()],
        )?,
    };
    Ok(())
}

/// The verified email of an identity's latest login, if it had one.
pub fn verified_email(
    conn: &impl Sql,
    identity: &Identity,
) -> Result<Option<VerifiedEmail>, StoreError> {
    let text: Option<String> = conn.query_opt(
        "SELECT email FROM identity_emails WHERE issuer = ?1 AND subject = ?2",
        &[&identity.issuer(), &identity.subject()],
        |r| r.get(0),
    )?;
    // A row that no longer parses is no verified email (when in doubt, deny).
    Ok(text.and_then(|t| VerifiedEmail::parse(&t).ok()))
}

/// Stores the on-call approval of a request that has one (at insertion).
pub fn save_automated(tx: &impl Sql, r: &AccessRequest) -> Result<(), StoreError> {
    let Some(a) = &r.automated else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO automated_approvals (request_id, source, evidence, at, content_hash)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &[
            &r.id.as_str(),
            &a.source,
            &a.evidence,
            &format_time(a.at),
            &a.content_hash,
        ],
    )?;
    Ok(())
}

/// The on-call approvals of the requests whose ids the JSON array `ids`
/// lists, by request.
pub fn load_automated_many(
    conn: &impl Sql,
    ids: &str,
) -> Result<HashMap<RequestId, AutomatedApproval>, StoreError> {
    let rows = conn.query_vec(
        &format!(
            "SELECT source, evidence, at, content_hash, request_id FROM automated_approvals
             WHERE {}",
            super::sql::in_json_list(conn.engine(), "request_id", "?1")
        ),
        &[&ids],
        |r| {
            let id = RequestId::parse(&r.get::<String>(4)?)
                .map_err(|e| StoreError::Corrupt(format!("request id: {e}")))?;
            Ok((id, automated_from(r)?))
        },
    )?;
    Ok(rows.into_iter().collect())
}

fn automated_from(r: &super::sql::Row<'_, '_>) -> Result<AutomatedApproval, StoreError> {
    Ok(AutomatedApproval {
        source: r.get(0)?,
        evidence: r.get(1)?,
        at: time(&r.get::<String>(2)?)?,
        content_hash: r.get(3)?,
    })
}

/// One check made at submission, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRow {
    /// `on_call` or `ticket`.
    pub kind: String,
    /// The configured provider's name.
    pub provider: String,
    /// Stable outcome word, e.g. `on_call`, `not_on_call`, `unavailable`,
    /// `open`, `flagged`.
    pub outcome: String,
    /// One sentence for people.
    pub summary: String,
    /// The provider's answer id (on-call entry, ticket id), when there is one.
    pub answer_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Stores the checks of a new request, in order.
pub fn save_checks(tx: &impl Sql, id: &RequestId, checks: &[CheckRow]) -> Result<(), StoreError> {
    for (position, c) in checks.iter().enumerate() {
        tx.execute(
            "INSERT INTO integration_checks (request_id, position, kind, provider, outcome, summary, answer_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &[
                &id.as_str(),
                &(position as i64),
                &c.kind,
                &c.provider,
                &c.outcome,
                &c.summary,
                &c.answer_id,
                &format_time(c.at),
            ],
        )?;
    }
    Ok(())
}

/// The checks of a request, in order.
pub fn checks(conn: &impl Sql, id: &RequestId) -> Result<Vec<CheckRow>, StoreError> {
    conn.query_vec(
        "SELECT kind, provider, outcome, summary, answer_id, at FROM integration_checks
         WHERE request_id = ?1 ORDER BY position",
        &[&id.as_str()],
        |r| {
            Ok(CheckRow {
                kind: r.get(0)?,
                provider: r.get(1)?,
                outcome: r.get(2)?,
                summary: r.get(3)?,
                answer_id: r.get(4)?,
                at: time(&r.get::<String>(5)?)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;

    fn request_row(conn: &impl Sql, id: &str) {
        conn.execute(
            "INSERT INTO requests (id, requester_issuer, requester_subject, requester_username, role,
                 hosts, duration_secs, reason, path, created_at, pending_until, state, updated_at)
             VALUES (?1, 'local', 'alice', 'alice', 'hotfix-admin', '[\"web-1\"]', 3600, 'INC-1',
                 'stages', '2027-01-01T00:00:00.000000Z', '2027-01-02T00:00:00.000000Z',
                 'pending', '2027-01-01T00:00:00.000000Z')",
            &[&id],
        )
        .unwrap();
    }

    fn check(kind: &str, outcome: &str, at: DateTime<Utc>) -> CheckRow {
        CheckRow {
            kind: kind.into(),
            provider: "pd".into(),
            outcome: outcome.into(),
            summary: format!("{kind} said {outcome}"),
            answer_id: (kind == "ticket").then(|| "INC-1".into()),
            at,
        }
    }

    // issue 15: an identity has one verified email (the latest login's),
    // forgotten when a login verifies none, on both engines.
    #[test]
    fn one_verified_email_per_identity_on_both_engines() {
        for (engine, mut conn, _dir) in test_engines() {
            let alice = Identity::new("https://idp.example", "alice").unwrap();
            let bob = Identity::new("https://idp.example", "bob").unwrap();
            let first = VerifiedEmail::parse("alice@example.com").unwrap();
            let second = VerifiedEmail::parse("alice@corp.example").unwrap();
            let now = Utc::now();
            conn.write(|tx| record_email(tx, &alice, Some(&first), now))
                .unwrap();
            conn.write(|tx| record_email(tx, &alice, Some(&second), now))
                .unwrap();
            conn.write(|tx| record_email(tx, &bob, Some(&first), now))
                .unwrap();
            assert_eq!(
                verified_email(&conn, &alice).unwrap(),
                Some(second),
                "{engine:?}"
            );
            let rows: i64 = conn
                .query_one(
                    "SELECT count(*) FROM identity_emails WHERE subject = 'alice'",
                    &[],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(rows, 1, "{engine:?}: one row per identity");
            conn.write(|tx| record_email(tx, &alice, None, now))
                .unwrap();
            assert_eq!(verified_email(&conn, &alice).unwrap(), None, "{engine:?}");
            assert_eq!(
                verified_email(&conn, &bob).unwrap(),
                Some(first),
                "{engine:?}"
            );
            // A stored value that no longer parses is no verified email.
            conn.execute(
                "UPDATE identity_emails SET email = 'not an email' WHERE subject = 'bob'",
                &[],
            )
            .unwrap();
            assert_eq!(verified_email(&conn, &bob).unwrap(), None, "{engine:?}");
        }
    }

    // issue 15: checks come back in order; a request has one check per
    // position, checks and on-call approvals need their request, and an
    // unknown kind is refused, on both engines.
    #[test]
    fn checks_and_automated_approvals_on_both_engines() {
        for (engine, mut conn, _dir) in test_engines() {
            let id = RequestId::parse("req_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
            let at = DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap();
            request_row(&conn, id.as_str());
            let rows = vec![check("on_call", "on_call", at), check("ticket", "open", at)];
            conn.write(|tx| save_checks(tx, &id, &rows)).unwrap();
            assert_eq!(checks(&conn, &id).unwrap(), rows, "{engine:?}");
            let again = conn.write(|tx| save_checks(tx, &id, &rows[..1]));
            assert!(again.is_err(), "{engine:?}: one check per position");
            let unknown = RequestId::parse("req_bbbbbbbbbbbbbbbbbbbbbbbbbb").unwrap();
            let orphan = conn.write(|tx| save_checks(tx, &unknown, &rows));
            assert!(orphan.is_err(), "{engine:?}: a check needs its request");
            let other = RequestId::parse("req_cccccccccccccccccccccccccc").unwrap();
            request_row(&conn, other.as_str());
            let bad_kind = conn.write(|tx| save_checks(tx, &other, &[check("psychic", "yes", at)]));
            assert!(bad_kind.is_err(), "{engine:?}: unknown kind refused");
            assert_eq!(checks(&conn, &other).unwrap(), vec![], "{engine:?}");

            assert_eq!(
                load_automated_many(&conn, &format!("[\"{id}\"]"))
                    .unwrap()
                    .remove(&id),
                None,
                "{engine:?}"
            );
            let approve = |tx: &crate::store::Tx<'_>| {
                tx.execute(
                    "INSERT INTO automated_approvals (request_id, source, evidence, at, content_hash)
                     VALUES (?1, 'pagerduty:pd:P1', 'on call until 18:00', ?2, 'h1')",
                    &[&id.as_str(), &format_time(at)],
                )
            };
            conn.write(approve).unwrap();
            assert!(conn.write(approve).is_err(), "{engine:?}: one per request");
            let found = load_automated_many(&conn, &format!("[\"{id}\"]"))
                .unwrap()
                .remove(&id)
                .unwrap();
            assert_eq!(
                (found.source.as_str(), found.at, found.content_hash.as_str()),
                ("pagerduty:pd:P1", at, "h1"),
                "{engine:?}"
            );
        }
    }
}
