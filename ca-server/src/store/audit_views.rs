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
mod tests {
    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::{audit, bastion_sessions, certificates};
    use tpa_core::audit::{NewEvent, Outcome, format_time};

    const R1: &str = "req_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    const R2: &str = "req_bbbbbbbbbbbbbbbbbbbbbbbbba";

    fn at(n: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000 + n, 0).unwrap()
    }

    fn event(n: i64, actor: &str, action: &str, object: &str) -> NewEvent {
        NewEvent {
            time: at(n),
            actor: actor.into(),
            source: "test".into(),
            action: action.into(),
            object: object.into(),
            outcome: Outcome::Success,
            reason: "test".into(),
            details: serde_json::json!({}),
        }
    }

    fn request(conn: &impl Sql, id: &str, who: &str, role: &str, hosts: &str, state: &str) {
        conn.execute(
            "INSERT INTO requests (id, requester_issuer, requester_subject, requester_username,
                 role, hosts, duration_secs, reason, path, created_at, pending_until, state,
                 updated_at)
             VALUES (?1, 'tpa:local', ?2, ?2, ?3, ?4, 3600, 'INC-1', 'stages', 't', 't', ?5, 't')",
            &[&id, &who, &role, &hosts, &state],
        )
        .unwrap();
    }

    fn cert(serial: &str, request: &str, audit_seq: i64) -> CertificateRow {
        CertificateRow {
            serial: serial.into(),
            key_id: format!("tpa:{request}:x"),
            principals: "[]".into(),
            extensions: "[]".into(),
            critical_options: "{}".into(),
            valid_after: 0,
            valid_before: 100,
            subject_key_fingerprint: "SHA256:s".into(),
            ca_key_fingerprint: "SHA256:ca".into(),
            request_id: Some(request.into()),
            issued_by: "system".into(),
            issued_at: format_time(at(audit_seq)),
            audit_seq,
        }
    }

    fn session(request: &str, audit_seq: i64) -> SessionRow {
        let t = format_time(at(audit_seq));
        SessionRow {
            session_id: "ses_1".into(),
            bastion: "b1".into(),
            request_id: request.into(),
            serial: "10".into(),
            key_id: "k".into(),
            login: "alice".into(),
            requester: "alice".into(),
            source: "127.0.0.1:1".into(),
            target: "web-1".into(),
            target_address: "127.0.0.1:22".into(),
            started_at: t.clone(),
            ended_at: t.clone(),
            bytes_to_target: 1,
            bytes_from_target: 2,
            end_reason: "closed".into(),
            error: None,
            received_at: t,
            audit_seq,
        }
    }

    fn seqs(events: Vec<Event>) -> Vec<i64> {
        events.into_iter().map(|e| e.seq).collect()
    }

    // issue 15: every filter of the auditor's log (user as actor or
    // requester, role, host, exact and prefix action, time range, paging)
    // selects the same events on both engines, as do the per-request views
    // and the metrics counts.
    #[test]
    fn audit_views_agree_on_both_engines() {
        for (engine, mut conn, _dir) in test_engines() {
            conn.write(|tx| {
                request(
                    tx,
                    R1,
                    "alice",
                    "hotfix-admin",
                    r#"["web-1","web-2"]"#,
                    "approved",
                );
                request(tx, R2, "bob", "read-only", r#"["db-1"]"#, "revoked");
                let r1 = format!("request:{R1}");
                let r2 = format!("request:{R2}");
                for e in [
                    event(1, "user:tpa:local/alice#alice", "request.submit", &r1),
                    event(2, "user:tpa:local/bob#bob", "request.submit", &r2),
                    event(3, "user:tpa:local/carol#carol", "request.approve", &r1),
                    event(4, "system", "cert.issue", "cert:10"),
                    event(5, "admin:root", "config.reload", "none"),
                    event(6, "user:tpa:local/malice#malice", "requestx", "none"),
                ] {
                    audit::append(tx, &e)?;
                }
                certificates::insert(tx, &cert("10", R1, 4))?;
                certificates::insert(tx, &cert("11", R2, 2))?;
                bastion_sessions::insert(tx, &session(R1, 5))
            })
            .unwrap();

            let find = |f: AuditFilter, limit| seqs(search(&conn, &f, limit).unwrap());
            let by = |f: AuditFilter| find(f, 50);
            let some = |s: &str| Some(s.to_owned());
            assert_eq!(by(AuditFilter::default()), [6, 5, 4, 3, 2, 1], "{engine:?}");
            let user = |u| AuditFilter {
                user: some(u),
                ..Default::default()
            };
            assert_eq!(
                by(user("alice")),
                [4, 3, 1],
                "{engine:?}: actor or requester"
            );
            assert_eq!(by(user("carol")), [3], "{engine:?}");
            assert_eq!(
                by(user("lice")),
                Vec::<i64>::new(),
                "{engine:?}: whole name"
            );
            let role = AuditFilter {
                role: some("read-only"),
                ..Default::default()
            };
            assert_eq!(by(role), [2], "{engine:?}");
            let host = |h| AuditFilter {
                host: some(h),
                ..Default::default()
            };
            assert_eq!(by(host("web-2")), [4, 3, 1], "{engine:?}");
            assert_eq!(by(host("web")), Vec::<i64>::new(), "{engine:?}: whole host");
            let action = |a| AuditFilter {
                action: some(a),
                ..Default::default()
            };
            assert_eq!(by(action("request.")), [3, 2, 1], "{engine:?}: prefix");
            assert_eq!(by(action("request.submit")), [2, 1], "{engine:?}");
            assert_eq!(by(action("requestx")), [6], "{engine:?}");
            let range = AuditFilter {
                from: Some(format_time(at(3))),
                to: Some(format_time(at(5))),
                ..Default::default()
            };
            assert_eq!(by(range), [4, 3], "{engine:?}");
            let page = AuditFilter {
                before: Some(3),
                ..Default::default()
            };
            assert_eq!(by(page), [2, 1], "{engine:?}");
            assert_eq!(find(AuditFilter::default(), 2), [6, 5], "{engine:?}");

            assert_eq!(seqs(request_events(&conn, R1, 10).unwrap()), [1, 3, 4]);
            assert_eq!(seqs(request_events(&conn, R1, 2).unwrap()), [1, 3]);

            let listed = |request, before| {
                certificates(&conn, request, before, 10)
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.row.serial, c.revoked))
                    .collect::<Vec<_>>()
            };
            let (ten, eleven) = (("10".to_owned(), false), ("11".to_owned(), true));
            assert_eq!(
                listed(None, None),
                [ten.clone(), eleven.clone()],
                "{engine:?}"
            );
            assert_eq!(listed(Some(R1), None), [ten], "{engine:?}");
            assert_eq!(listed(None, Some(4)), [eleven], "{engine:?}");

            assert_eq!(
                sessions(&conn, Some(R1), None, 10).unwrap(),
                [session(R1, 5)]
            );
            assert_eq!(sessions(&conn, Some(R2), None, 10).unwrap(), []);
            assert_eq!(sessions(&conn, None, Some(5), 10).unwrap(), []);

            let counts = counts(&conn).unwrap();
            assert_eq!(
                counts.requests_by_state,
                [("approved".to_owned(), 1), ("revoked".to_owned(), 1)],
                "{engine:?}"
            );
            assert_eq!(counts.events_by_action.len(), 5, "{engine:?}");
            assert_eq!(
                counts.events_by_action[0],
                ("cert.issue".to_owned(), "success".to_owned(), 1)
            );
            assert_eq!(
                (counts.certificates, counts.sessions, counts.audit_head),
                (2, 1, 6),
                "{engine:?}"
            );
        }
    }
}
