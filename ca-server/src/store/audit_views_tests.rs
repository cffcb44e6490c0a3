//! Tests of `audit_views.rs` on both engines (issue 15).

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
