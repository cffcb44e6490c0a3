//! Issue 17's tables: `identity_emails` (verified emails of OpenID Connect
//! identities), `automated_approvals` (on-call approvals) and
//! `integration_checks` (what on-call and ticket checks found).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tpa_core::{AccessRequest, AutomatedApproval, Identity, RequestId, VerifiedEmail};

use super::StoreError;
use tpa_core::audit::format_time;

fn time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("integration time: {e}")))
}

/// Records the email an identity's login verified, or forgets it when the
/// login had none (the latest login decides).
pub fn record_email(
    tx: &Transaction<'_>,
    identity: &Identity,
    email: Option<&VerifiedEmail>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match email {
        Some(email) => tx.execute(
            "INSERT INTO identity_emails (issuer, subject, email, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (issuer, subject) DO UPDATE SET email = excluded.email, updated_at = excluded.updated_at",
            params![identity.issuer(), identity.subject(), email.as_str(), format_time(now)],
        )?,
        None => tx.execute(
            "DELETE FROM identity_emails WHERE issuer = ?1 AND subject = ?2",
            params![identity.issuer(), identity.subject()],
        )?,
    };
    Ok(())
}

/// The verified email of an identity's latest login, if it had one.
pub fn verified_email(
    conn: &Connection,
    identity: &Identity,
) -> Result<Option<VerifiedEmail>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT email FROM identity_emails WHERE issuer = ?1 AND subject = ?2")?
        .query_row(params![identity.issuer(), identity.subject()], |r| r.get(0))
        .optional()?;
    // A row that no longer parses is no verified email (when in doubt, deny).
    Ok(text.and_then(|t| VerifiedEmail::parse(&t).ok()))
}

/// Stores the on-call approval of a request that has one (at insertion).
pub fn save_automated(tx: &impl super::sql::Sql, r: &AccessRequest) -> Result<(), StoreError> {
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

/// The on-call approval of a request, if it has one.
pub fn load_automated(
    conn: &impl super::sql::Sql,
    id: &RequestId,
) -> Result<Option<AutomatedApproval>, StoreError> {
    conn.query_opt(
        "SELECT source, evidence, at, content_hash FROM automated_approvals WHERE request_id = ?1",
        &[&id.as_str()],
        |r| {
            Ok(AutomatedApproval {
                source: r.get(0)?,
                evidence: r.get(1)?,
                at: time(&r.get::<String>(2)?)?,
                content_hash: r.get(3)?,
            })
        },
    )
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
pub fn save_checks(
    tx: &Transaction<'_>,
    id: &RequestId,
    checks: &[CheckRow],
) -> Result<(), StoreError> {
    for (position, c) in checks.iter().enumerate() {
        tx.execute(
            "INSERT INTO integration_checks (request_id, position, kind, provider, outcome, summary, answer_id, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                id.as_str(),
                position as i64,
                c.kind,
                c.provider,
                c.outcome,
                c.summary,
                c.answer_id,
                format_time(c.at)
            ],
        )?;
    }
    Ok(())
}

/// The checks of a request, in order.
pub fn checks(conn: &Connection, id: &RequestId) -> Result<Vec<CheckRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, provider, outcome, summary, answer_id, at FROM integration_checks
         WHERE request_id = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([id.as_str()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, provider, outcome, summary, answer_id, at) = row?;
        out.push(CheckRow {
            kind,
            provider,
            outcome,
            summary,
            answer_id,
            at: time(&at)?,
        });
    }
    Ok(out)
}
