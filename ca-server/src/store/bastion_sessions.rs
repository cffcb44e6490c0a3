//! The `bastion_sessions` table (session records from bastions), the
//! `bastion_events` table (their refusal reports) and the queries behind the
//! bastions' revocation feed.

use super::StoreError;
use super::sql::Sql;

/// A session record as stored (the workflow has checked every field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// `ses_…`, unique.
    pub session_id: String,
    /// The delivering bastion's configured name.
    pub bastion: String,
    /// `req_…`.
    pub request_id: String,
    /// Decimal certificate serial.
    pub serial: String,
    /// Certificate key id.
    pub key_id: String,
    /// SSH username at the bastion.
    pub login: String,
    /// Requester from the key id.
    pub requester: String,
    /// Client `ip:port`.
    pub source: String,
    /// Target host name.
    pub target: String,
    /// Address connected to.
    pub target_address: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub ended_at: String,
    /// Client to target.
    pub bytes_to_target: i64,
    /// Target to client.
    pub bytes_from_target: i64,
    /// How it ended.
    pub end_reason: String,
    /// The error, when it ended with one.
    pub error: Option<String>,
    /// RFC 3339 UTC.
    pub received_at: String,
    /// The `session.record` audit event.
    pub audit_seq: i64,
}

/// A refusal report as stored (the workflow has checked every field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// `evt_…`, unique.
    pub event_id: String,
    /// The delivering bastion's configured name.
    pub bastion: String,
    /// `auth_rejected`, `channel_refused` or `events_suppressed`.
    pub kind: String,
    /// The request it concerns, when known.
    pub request_id: Option<String>,
    /// How many refusals it stands for.
    pub count: i64,
    /// RFC 3339 UTC.
    pub received_at: String,
    /// Its audit event.
    pub audit_seq: i64,
}

/// Whether a report with this event id is stored.
pub fn event_exists(tx: &impl Sql, event_id: &str) -> Result<bool, StoreError> {
    tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM bastion_events WHERE event_id = ?1)",
        &[&event_id],
        |r| r.get(0),
    )
}

/// Inserts one report.
pub fn insert_event(tx: &impl Sql, row: &EventRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO bastion_events (event_id, bastion, kind, request_id, count, received_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &[
            &row.event_id,
            &row.bastion,
            &row.kind,
            &row.request_id,
            &row.count,
            &row.received_at,
            &row.audit_seq,
        ],
    )?;
    Ok(())
}

/// Whether a record with this session id is stored.
pub fn exists(tx: &impl Sql, session_id: &str) -> Result<bool, StoreError> {
    tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM bastion_sessions WHERE session_id = ?1)",
        &[&session_id],
        |r| r.get(0),
    )
}

/// Inserts one record.
pub fn insert(tx: &impl Sql, row: &SessionRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO bastion_sessions (session_id, bastion, request_id, serial, key_id, login, requester,
             source, target, target_address, started_at, ended_at, bytes_to_target, bytes_from_target,
             end_reason, error, received_at, audit_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        &[
            &row.session_id,
            &row.bastion,
            &row.request_id,
            &row.serial,
            &row.key_id,
            &row.login,
            &row.requester,
            &row.source,
            &row.target,
            &row.target_address,
            &row.started_at,
            &row.ended_at,
            &row.bytes_to_target,
            &row.bytes_from_target,
            &row.end_reason,
            &row.error,
            &row.received_at,
            &row.audit_seq,
        ],
    )?;
    Ok(())
}

/// One key id with live certificates, as the feed sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    /// The certificates' key id.
    pub key_id: String,
    /// `req_…`.
    pub request_id: String,
    /// The request's state.
    pub state: String,
    /// The request's window end (RFC 3339), if it has one.
    pub window_end: Option<String>,
    /// The latest `valid_before` of its certificates (Unix seconds).
    pub valid_before: i64,
}

/// The head of the audit chain (0 for an empty trail): the feed's cursor.
pub fn cursor(conn: &impl Sql) -> Result<i64, StoreError> {
    conn.query_one("SELECT coalesce(max(seq), 0) FROM audit_events", &[], |r| {
        r.get(0)
    })
}

/// Key ids of requests with certificates still valid at `now_unix`; with
/// `since`, only requests touched by audit events or certificates after that seq.
pub fn live_grants(
    conn: &impl Sql,
    now_unix: i64,
    since: Option<i64>,
) -> Result<Vec<GrantRow>, StoreError> {
    let grant = |r: &super::sql::Row<'_, '_>| {
        Ok(GrantRow {
            key_id: r.get(0)?,
            request_id: r.get(1)?,
            state: r.get(2)?,
            window_end: r.get(3)?,
            valid_before: r.get(4)?,
        })
    };
    // Two statements rather than one with an unused parameter: PostgreSQL
    // cannot type a parameter no expression uses.
    match since {
        Some(since) => conn.query_vec(
            &format!(
                "{LIVE_GRANTS} AND r.id IN (
                     SELECT substr(object, 9) FROM audit_events
                     WHERE seq > ?2 AND object LIKE 'request:%'
                     UNION SELECT request_id FROM certificates
                     WHERE audit_seq > ?2 AND request_id IS NOT NULL)
                 {GROUPED}"
            ),
            &[&now_unix, &since],
            grant,
        ),
        None => conn.query_vec(&format!("{LIVE_GRANTS} {GROUPED}"), &[&now_unix], grant),
    }
}

const LIVE_GRANTS: &str = "SELECT c.key_id, r.id, r.state, r.window_end, max(c.valid_before)
     FROM certificates c JOIN requests r ON r.id = c.request_id
     WHERE c.valid_before > ?1";

const GROUPED: &str = "GROUP BY c.key_id, r.id ORDER BY r.id";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::test_engines;
    use crate::store::{audit, certificates};
    use tpa_core::audit::{NewEvent, Outcome};

    const R1: &str = "req_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    const R2: &str = "req_bbbbbbbbbbbbbbbbbbbbbbbbba";

    fn event(action: &str, object: &str) -> NewEvent {
        NewEvent {
            time: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            actor: "bastion:b1".into(),
            source: "test".into(),
            action: action.into(),
            object: object.into(),
            outcome: Outcome::Success,
            reason: "test".into(),
            details: serde_json::json!({}),
        }
    }

    fn session(id: &str, audit_seq: i64) -> SessionRow {
        SessionRow {
            session_id: id.into(),
            bastion: "b1".into(),
            request_id: R1.into(),
            serial: "10".into(),
            key_id: "k".into(),
            login: "alice".into(),
            requester: "alice".into(),
            source: "127.0.0.1:1".into(),
            target: "web-1".into(),
            target_address: "127.0.0.1:22".into(),
            started_at: "2026-01-01T00:00:00.000000Z".into(),
            ended_at: "2026-01-01T00:01:00.000000Z".into(),
            bytes_to_target: 10,
            bytes_from_target: 20,
            end_reason: "closed".into(),
            error: Some("reset".into()),
            received_at: "2026-01-01T00:01:01.000000Z".into(),
            audit_seq,
        }
    }

    fn report(id: &str, audit_seq: i64) -> EventRow {
        EventRow {
            event_id: id.into(),
            bastion: "b1".into(),
            kind: "auth_rejected".into(),
            request_id: None,
            count: 3,
            received_at: "2026-01-01T00:01:01.000000Z".into(),
            audit_seq,
        }
    }

    // issue 15: a session record and a refusal report are stored once per
    // id, each with its own audit event, on both engines.
    #[test]
    fn records_and_reports_are_stored_once() {
        for (engine, mut conn, _dir) in test_engines() {
            assert_eq!(cursor(&conn).unwrap(), 0, "{engine:?}");
            conn.write(|tx| {
                let seq = audit::append(tx, &event("session.record", "session:ses_1"))?.seq;
                assert!(!exists(tx, "ses_1")?);
                insert(tx, &session("ses_1", seq))?;
                assert!(exists(tx, "ses_1")?);
                let seq = audit::append(tx, &event("bastion.report", "event:evt_1"))?.seq;
                assert!(!event_exists(tx, "evt_1")?);
                insert_event(tx, &report("evt_1", seq))?;
                assert!(event_exists(tx, "evt_1")?);
                Ok::<_, StoreError>(())
            })
            .unwrap();
            assert_eq!(cursor(&conn).unwrap(), 2, "{engine:?}");
            let refused =
                |conn: &mut crate::store::Conn,
                 f: &dyn Fn(&crate::store::Tx<'_>, i64) -> Result<(), StoreError>| {
                    conn.write(|tx| {
                        let seq = audit::append(tx, &event("x", "y"))?.seq;
                        f(tx, seq)
                    })
                    .is_err()
                };
            assert!(
                refused(&mut conn, &|tx, seq| insert(tx, &session("ses_1", seq))),
                "{engine:?}: session id"
            );
            assert!(
                refused(&mut conn, &|tx, seq| insert_event(
                    tx,
                    &report("evt_1", seq)
                )),
                "{engine:?}: event id"
            );
            assert!(
                refused(&mut conn, &|tx, _| insert(tx, &session("ses_2", 1))),
                "{engine:?}: one record per event"
            );
            assert!(
                refused(&mut conn, &|tx, _| insert(tx, &session("ses_2", 99))),
                "{engine:?}: its event exists"
            );
            assert!(
                refused(&mut conn, &|tx, seq| insert(
                    tx,
                    &SessionRow {
                        bytes_to_target: -1,
                        ..session("ses_2", seq)
                    }
                )),
                "{engine:?}: byte counts are not negative"
            );
            assert_eq!(
                cursor(&conn).unwrap(),
                2,
                "{engine:?}: refused writes left nothing"
            );
        }
    }

    // issue 15: the revocation feed's live grants, whole and since a seq,
    // are the same on both engines.
    #[test]
    fn live_grants_whole_and_since() {
        for (engine, mut conn, _dir) in test_engines() {
            conn.write(|tx| {
                for (id, state) in [(R1, "approved"), (R2, "revoked")] {
                    tx.execute(
                        "INSERT INTO requests (id, requester_issuer, requester_subject,
                             requester_username, role, hosts, duration_secs, reason, path,
                             created_at, pending_until, state, updated_at, window_end)
                         VALUES (?1, 'tpa:local', 'alice', 'alice', 'r', '[]', 60, 'x', 'stages',
                             't', 't', ?2, 't', 'end')",
                        &[&id, &state],
                    )?;
                }
                let issue = |serial: &str, request: &str, valid_before: i64| {
                    let seq =
                        audit::append(tx, &event("cert.issue", &format!("cert:{serial}")))?.seq;
                    certificates::insert(
                        tx,
                        &certificates::CertificateRow {
                            serial: serial.into(),
                            key_id: format!("key-{request}"),
                            principals: "[]".into(),
                            extensions: "[]".into(),
                            critical_options: "{}".into(),
                            valid_after: 0,
                            valid_before,
                            subject_key_fingerprint: "s".into(),
                            ca_key_fingerprint: "ca".into(),
                            request_id: Some(request.into()),
                            issued_by: "system".into(),
                            issued_at: "t".into(),
                            audit_seq: seq,
                        },
                    )
                };
                issue("1", R1, 100)?;
                issue("2", R1, 300)?;
                issue("3", R2, 200)?;
                issue("4", R2, 50)
            })
            .unwrap();
            let grant = |request: &str, state: &str, valid_before| GrantRow {
                key_id: format!("key-{request}"),
                request_id: request.into(),
                state: state.into(),
                window_end: Some("end".into()),
                valid_before,
            };
            assert_eq!(
                live_grants(&conn, 60, None).unwrap(),
                [grant(R1, "approved", 300), grant(R2, "revoked", 200)],
                "{engine:?}"
            );
            assert_eq!(
                live_grants(&conn, 250, None).unwrap(),
                [grant(R1, "approved", 300)]
            );
            // Since seq 2 only the certificates 3 and 4 (of R2) are new.
            assert_eq!(
                live_grants(&conn, 60, Some(2)).unwrap(),
                [grant(R2, "revoked", 200)],
                "{engine:?}"
            );
            conn.write(|tx| audit::append(tx, &event("request.revoke", &format!("request:{R1}"))))
                .unwrap();
            assert_eq!(
                live_grants(&conn, 60, Some(4)).unwrap(),
                [grant(R1, "approved", 300)],
                "{engine:?}: touched by an event"
            );
        }
    }
}
