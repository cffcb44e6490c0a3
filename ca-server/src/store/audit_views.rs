//! Read-only queries behind the auditor's pages and endpoints: the audit log
//! with filters, one request's events, certificates and bastion sessions.
//! Every list is bounded and pages backwards by a sequence number.

use super::StoreError;
use super::audit::{event_columns, event_from};
use super::bastion_sessions::SessionRow;
use super::certificates::CertificateRow;
use super::revocations::CERTIFICATE_REVOKED;
use super::sql::{Engine, Row, Sql};
use tpa_core::audit::Event;

/// Filters of the audit log; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// A user name: events by that user (actor `user:…#<name>`) or about a
    /// request of theirs (its events, certificates and sessions).
    pub user: Option<String>,
    /// Events about requests for this role (and their certificates).
    pub role: Option<String>,
    /// Events about requests that include this host (and their certificates).
    pub host: Option<String>,
    /// Exact action (`request.approve`) or, ending in `.`, a prefix (`request.`).
    pub action: Option<String>,
    /// Events at or after this stored time (RFC 3339 UTC, microseconds).
    pub from: Option<String>,
    /// Events before this stored time.
    pub to: Option<String>,
    /// Events with a smaller `seq` (the next page).
    pub before: Option<i64>,
}

/// At most `limit` events matching `filter`, highest `seq` first.
pub fn search(conn: &impl Sql, filter: &AuditFilter, limit: u32) -> Result<Vec<Event>, StoreError> {
    // The hosts of a request are a JSON array in a text column; each engine
    // has its own function to expand one into rows (a `value` column both).
    let host_rows = match conn.engine() {
        Engine::Sqlite => "json_each(r.hosts)",
        Engine::Postgres => "jsonb_array_elements_text(CAST(r.hosts AS jsonb))",
    };
    // The request an event is about: its object `request:<id>`, or the
    // request of the certificate `cert:<serial>` it names. Optional filters
    // are cast where first used so that PostgreSQL knows a NULL's type; the
    // user's name is the actor's suffix after `#`, found with a positive
    // `substr` start (SQLite's negative start has no PostgreSQL twin).
    let sql = format!(
        "SELECT {} FROM audit_events a
         LEFT JOIN certificates c ON a.object LIKE 'cert:%' AND c.serial = substr(a.object, 6)
         LEFT JOIN requests r ON r.id = CASE WHEN a.object LIKE 'request:%'
                                             THEN substr(a.object, 9) ELSE c.request_id END
         WHERE a.seq < coalesce(CAST(?1 AS BIGINT), 9223372036854775807)
           AND (CAST(?2 AS TEXT) IS NULL
                OR (a.actor LIKE 'user:%'
                    AND substr(a.actor, length(a.actor) - length(?2)) = '#' || ?2)
                OR r.requester_username = ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR r.role = ?3)
           AND (CAST(?4 AS TEXT) IS NULL
                OR EXISTS (SELECT 1 FROM {host_rows} h WHERE h.value = ?4))
           AND (CAST(?5 AS TEXT) IS NULL OR a.action = ?5
                OR (?5 LIKE '%.' AND substr(a.action, 1, length(?5)) = ?5))
           AND (CAST(?6 AS TEXT) IS NULL OR a.time >= ?6)
           AND (CAST(?7 AS TEXT) IS NULL OR a.time < ?7)
         ORDER BY a.seq DESC LIMIT ?8",
        event_columns("a.")
    );
    conn.query_vec(
        &sql,
        &[
            &filter.before,
            &filter.user,
            &filter.role,
            &filter.host,
            &filter.action,
            &filter.from,
            &filter.to,
            &i64::from(limit),
        ],
        event_from,
    )
}

/// Every event about request `id` (its own events and those of its
/// certificates), oldest first, at most `limit`.
pub fn request_events(conn: &impl Sql, id: &str, limit: u32) -> Result<Vec<Event>, StoreError> {
    let sql = format!(
        "SELECT {} FROM audit_events a
         WHERE a.object = 'request:' || CAST(?1 AS TEXT)
            OR a.object IN (SELECT 'cert:' || serial FROM certificates WHERE request_id = ?1)
         ORDER BY a.seq LIMIT ?2",
        event_columns("a.")
    );
    conn.query_vec(&sql, &[&id, &i64::from(limit)], event_from)
}

/// A certificate and whether it is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateListing {
    /// The stored row.
    pub row: CertificateRow,
    /// Revoked by serial, request, user or CA key, or its request was
    /// cancelled.
    pub revoked: bool,
}

fn certificate(r: &Row<'_, '_>) -> Result<CertificateListing, StoreError> {
    Ok(CertificateListing {
        row: CertificateRow {
            serial: r.get(0)?,
            key_id: r.get(1)?,
            principals: r.get(2)?,
            extensions: r.get(3)?,
            critical_options: r.get(4)?,
            valid_after: r.get(5)?,
            valid_before: r.get(6)?,
            subject_key_fingerprint: r.get(7)?,
            ca_key_fingerprint: r.get(8)?,
            request_id: r.get(9)?,
            issued_by: r.get(10)?,
            issued_at: r.get(11)?,
            audit_seq: r.get(12)?,
        },
        revoked: r.get(13)?,
    })
}

const CERT_COLUMNS: &str = "c.serial, c.key_id, c.principals, c.extensions, c.critical_options,
        c.valid_after, c.valid_before, c.subject_key_fingerprint, c.ca_key_fingerprint, c.request_id,
        c.issued_by, c.issued_at, c.audit_seq";

/// At most `limit` certificates (of `request` when given) with an issuance
/// event before `before`, newest first.
pub fn certificates(
    conn: &impl Sql,
    request: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<CertificateListing>, StoreError> {
    let sql = format!(
        "SELECT {CERT_COLUMNS}, {CERTIFICATE_REVOKED} FROM certificates c
         WHERE (CAST(?1 AS TEXT) IS NULL OR c.request_id = ?1)
           AND c.audit_seq < coalesce(CAST(?2 AS BIGINT), 9223372036854775807)
         ORDER BY c.audit_seq DESC LIMIT ?3"
    );
    conn.query_vec(&sql, &[&request, &before, &i64::from(limit)], certificate)
}

fn session(r: &Row<'_, '_>) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        session_id: r.get(0)?,
        bastion: r.get(1)?,
        request_id: r.get(2)?,
        serial: r.get(3)?,
        key_id: r.get(4)?,
        login: r.get(5)?,
        requester: r.get(6)?,
        source: r.get(7)?,
        target: r.get(8)?,
        target_address: r.get(9)?,
        started_at: r.get(10)?,
        ended_at: r.get(11)?,
        bytes_to_target: r.get(12)?,
        bytes_from_target: r.get(13)?,
        end_reason: r.get(14)?,
        error: r.get(15)?,
        received_at: r.get(16)?,
        audit_seq: r.get(17)?,
    })
}

/// At most `limit` bastion sessions (of `request` when given) recorded
/// before audit event `before`, newest first.
pub fn sessions(
    conn: &impl Sql,
    request: Option<&str>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<SessionRow>, StoreError> {
    conn.query_vec(
        "SELECT session_id, bastion, request_id, serial, key_id, login, requester, source, target,
                target_address, started_at, ended_at, bytes_to_target, bytes_from_target, end_reason,
                error, received_at, audit_seq
         FROM bastion_sessions
         WHERE (CAST(?1 AS TEXT) IS NULL OR request_id = ?1)
           AND audit_seq < coalesce(CAST(?2 AS BIGINT), 9223372036854775807)
         ORDER BY audit_seq DESC LIMIT ?3",
        &[&request, &before, &i64::from(limit)],
        session,
    )
}

/// Counters for `/metrics`: `(name, label, count)` rows.
pub fn counts(conn: &impl Sql) -> Result<Counts, StoreError> {
    let requests_by_state = conn.query_vec(
        "SELECT state, count(*) FROM requests GROUP BY state ORDER BY 1",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let events_by_action = conn.query_vec(
        "SELECT action, outcome, count(*) FROM audit_events GROUP BY action, outcome ORDER BY 1, 2",
        &[],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let count = |sql: &str| conn.query_one(sql, &[], |r| r.get::<i64>(0));
    Ok(Counts {
        requests_by_state,
        events_by_action,
        certificates: count("SELECT count(*) FROM certificates")?,
        sessions: count("SELECT count(*) FROM bastion_sessions")?,
        audit_head: count("SELECT coalesce(max(seq), 0) FROM audit_events")?,
    })
}

/// What `/metrics` counts in the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// `(state, requests)`.
    pub requests_by_state: Vec<(String, i64)>,
    /// `(action, outcome, events)`.
    pub events_by_action: Vec<(String, String, i64)>,
    /// Certificates issued.
    pub certificates: i64,
    /// Bastion session records.
    pub sessions: i64,
    /// The highest audit `seq` (0 when empty).
    pub audit_head: i64,
}

#[cfg(test)]
#[path = "audit_views_tests.rs"]
mod tests;
