//! The bastions' endpoints over real HTTP: the revocation feed and session
//! records, each only with a configured bastion token (issue 6, items 4 and 5).

use ca_server::store::sql::Sql as _;
use sha2::{Digest as _, Sha256};

use crate::helpers::{HOTFIX, spawn_team_app_with};
use crate::helpers::{Response, TestApp, audit_rows, count, ed25519_public_key, http_send};

const BASTION_TOKEN: &str = "tpab_test-bastion-token-0123456789abcdefghij";

async fn bastion_app() -> TestApp {
    let hash = hex::encode(Sha256::digest(BASTION_TOKEN.as_bytes()));
    spawn_team_app_with(move |data| {
        data.edit_config(|text| {
            format!("{text}\n[[bastions]]\nname = \"bastion-1\"\ntoken_hash = \"{hash}\"\n")
        });
    })
    .await
}

/// An approved hotfix request with one certificate; returns (request id, key id).
async fn approved_with_certificate(app: &TestApp) -> (String, String) {
    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app.submit(&alice, HOTFIX).await;
    app.approve(&bob, &id).await;
    app.approve(&carol, &id).await;
    let key = serde_json::json!({ "public_key": ed25519_public_key() }).to_string();
    let r = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (id.clone(), format!("tpa:request={id}:user=alice"))
}

fn record(session_id: &str, request: &str, key_id: &str) -> serde_json::Value {
    serde_json::json!({
        "session_id": session_id,
        "serial": "12345",
        "key_id": key_id,
        "request": request,
        "login": "deploy",
        "requester": "alice",
        "source": "127.0.0.1:50000",
        "target": "web-1",
        "target_address": "127.0.0.1:2222",
        "started_at": "2026-11-24T09:00:00.000000Z",
        "ended_at": "2026-11-24T09:01:00.000000Z",
        "bytes_to_target": 1200,
        "bytes_from_target": 3400,
        "end": "access_revoked",
    })
}

async fn post_sessions(app: &TestApp, token: &str, body: &str) -> Response {
    let auth = format!("Bearer {token}");
    http_send(
        app.address,
        "POST",
        "/api/v1/sessions",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn bastion_endpoints_need_a_bastion_token() {
    let app = bastion_app().await;
    let alice = app.login("alice").await;
    // No token, a wrong token, and a user's API token: all 401 with JSON.
    for auth in [None, Some("tpab_wrong"), Some(alice.as_str())] {
        let headers: Vec<(&str, String)> = auth
            .map(|t| vec![("Authorization", format!("Bearer {t}"))])
            .unwrap_or_default();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = http_send(
            app.address,
            "GET",
            "/api/v1/bastion/revocations",
            &headers,
            "",
        )
        .await;
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (401, Some("unauthenticated")),
            "{auth:?}"
        );
        let r = post_sessions(&app, auth.unwrap_or("x"), r#"{"records":[]}"#).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
    }
    // The bastion token is no user token either.
    let r = app.get_as(BASTION_TOKEN, "/api/v1/whoami").await;
    assert_eq!(r.status, 401);
    app.stop().await;
}

#[tokio::test]
async fn feed_reports_window_ends_then_revocations_since_the_cursor() {
    let app = bastion_app().await;
    let (id, key_id) = approved_with_certificate(&app).await;
    let feed = app
        .get_as(BASTION_TOKEN, "/api/v1/bastion/revocations")
        .await;
    assert_eq!(feed.status, 200, "{}", feed.body);
    let feed = feed.json();
    assert_eq!(feed["full"], true);
    assert_eq!(feed["active"][0]["key_id"], key_id.as_str());
    assert_eq!(feed["active"][0]["request"], id.as_str());
    assert!(feed["active"][0]["window_end"].as_u64().unwrap() > 0);
    assert_eq!(feed["revoked"], serde_json::json!([]));
    let cursor = feed["cursor"].as_u64().unwrap();

    // Nothing changed: an empty delta.
    let delta = app
        .get_as(
            BASTION_TOKEN,
            &format!("/api/v1/bastion/revocations?since={cursor}"),
        )
        .await
        .json();
    assert_eq!(delta["full"], false);
    assert_eq!(delta["active"], serde_json::json!([]));
    assert_eq!(delta["revoked"], serde_json::json!([]));

    // An approver revokes: the delta names the key id, from the database.
    let bob = app.login("bob").await;
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/revoke"),
            r#"{"comment":"incident closed"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let delta = app
        .get_as(
            BASTION_TOKEN,
            &format!("/api/v1/bastion/revocations?since={cursor}"),
        )
        .await
        .json();
    assert_eq!(delta["revoked"][0]["key_id"], key_id.as_str());
    assert_eq!(delta["revoked"][0]["state"], "revoked");
    assert!(delta["cursor"].as_u64().unwrap() > cursor);
    // A fresh bastion's snapshot has it too.
    let full = app
        .get_as(BASTION_TOKEN, "/api/v1/bastion/revocations")
        .await
        .json();
    assert_eq!(full["revoked"][0]["key_id"], key_id.as_str());
    assert_eq!(full["active"], serde_json::json!([]));
    // A bad cursor is a JSON 4xx, not a panic.
    let r = app
        .get_as(BASTION_TOKEN, "/api/v1/bastion/revocations?since=x")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["code"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn feed_lists_the_subject_keys_of_unexpired_certificates() {
    // Issue 13 (finding 5): the bastion answers a key's probe only for the
    // keys of unexpired certificates, so clients never sign with plain keys.
    // The list is complete in every answer; a revoked certificate's key stays
    // until it expires, so the bastion can say why it refuses it (issue 12).
    let app = bastion_app().await;
    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app.submit(&alice, HOTFIX).await;
    // Approved but not yet issued: no key to list.
    app.approve(&bob, &id).await;
    app.approve(&carol, &id).await;
    let feed = app
        .get_as(BASTION_TOKEN, "/api/v1/bastion/revocations")
        .await
        .json();
    assert_eq!(feed["certified_keys"], serde_json::json!([]));
    let cursor = feed["cursor"].as_u64().unwrap();
    let public = ed25519_public_key();
    let fingerprint = ssh_key::PublicKey::from_openssh(&public)
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    let key = serde_json::json!({ "public_key": public }).to_string();
    let r = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let full = app
        .get_as(BASTION_TOKEN, "/api/v1/bastion/revocations")
        .await
        .json();
    assert_eq!(full["certified_keys"], serde_json::json!([fingerprint]));
    // A delta carries the complete list too.
    let delta = app
        .get_as(
            BASTION_TOKEN,
            &format!("/api/v1/bastion/revocations?since={cursor}"),
        )
        .await
        .json();
    assert_eq!(delta["full"], false);
    assert_eq!(delta["certified_keys"], serde_json::json!([fingerprint]));
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/revoke"),
            r#"{"comment":"done"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let full = app
        .get_as(BASTION_TOKEN, "/api/v1/bastion/revocations")
        .await
        .json();
    assert_eq!(full["certified_keys"], serde_json::json!([fingerprint]));
    assert_eq!(full["revoked"][0]["request"], id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn session_records_are_stored_once_and_audited_on_the_request() {
    let app = bastion_app().await;
    let (id, key_id) = approved_with_certificate(&app).await;
    let one = record("ses_0123456789abcdef0123456789abcdef", &id, &key_id);
    let two = record("ses_fedcba9876543210fedcba9876543210", &id, &key_id);
    let body = serde_json::json!({ "records": [one] }).to_string();
    let r = post_sessions(&app, BASTION_TOKEN, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!({ "stored": 1, "duplicates": 0 })
    );
    // Redelivery (the bastion crashed before truncating its spool) plus a new one.
    let body = serde_json::json!({ "records": [one, two] }).to_string();
    let r = post_sessions(&app, BASTION_TOKEN, &body).await;
    assert_eq!(
        r.json(),
        serde_json::json!({ "stored": 1, "duplicates": 1 })
    );
    let conn = app.data.open_plain();
    assert_eq!(count(&conn, "bastion_sessions"), 2);
    let (bytes_to, bytes_from, end, bastion): (i64, i64, String, String) = conn
        .query_one(
            "SELECT bytes_to_target, bytes_from_target, end_reason, bastion FROM bastion_sessions
             WHERE session_id = 'ses_0123456789abcdef0123456789abcdef'",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (bytes_to, bytes_from, end.as_str(), bastion.as_str()),
        (1200, 3400, "access_revoked", "bastion-1")
    );
    let rows: Vec<_> = audit_rows(&conn)
        .into_iter()
        .filter(|r| r.action == "session.record")
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].object, format!("request:{id}"));
    assert_eq!(rows[0].actor, "bastion:bastion-1");
    assert_eq!(rows[0].reason, "ended: access revoked");
    assert!(
        rows[0].details.contains("\"bytes_from_target\":3400"),
        "{}",
        rows[0].details
    );

    // Invalid records are refused as a whole, with a JSON error and nothing stored.
    let mut bad = record("ses_not-hex", &id, &key_id);
    let body = serde_json::json!({ "records": [bad.clone()] }).to_string();
    let r = post_sessions(&app, BASTION_TOKEN, &body).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (422, Some("invalid_session_record"))
    );
    bad["session_id"] = "ses_00000000000000000000000000000009".into();
    bad["end"] = "vanished".into();
    let body = serde_json::json!({ "records": [bad] }).to_string();
    assert_eq!(post_sessions(&app, BASTION_TOKEN, &body).await.status, 422);
    let r = post_sessions(&app, BASTION_TOKEN, "{\"records\": 5}").await;
    assert!(r.status == 400 || r.status == 422, "{}", r.body);
    assert_eq!(count(&conn, "bastion_sessions"), 2);
    app.stop().await;
}

fn refusal(event_id: &str, kind: &str, request: Option<&str>, count: u64) -> serde_json::Value {
    let mut e = serde_json::json!({
        "event_id": event_id,
        "kind": kind,
        "source": "203.0.113.7",
        "login": "root",
        "what": "authentication",
        "reason": "password authentication is not accepted: only TPA certificates are",
        "count": count,
        "first_at": "2026-11-24T09:00:00.000000Z",
        "last_at": "2026-11-24T09:00:09.000000Z",
    });
    if let Some(id) = request {
        e["request"] = id.into();
    }
    e
}

async fn post_events(app: &TestApp, token: &str, body: &str) -> Response {
    let auth = format!("Bearer {token}");
    http_send(
        app.address,
        "POST",
        "/api/v1/bastion/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn refusal_reports_are_audited_once_on_the_request_or_the_bastion() {
    // Issue 6: every rejection at the bastion reaches the audit trail.
    let app = bastion_app().await;
    let (id, _) = approved_with_certificate(&app).await;
    let auth = refusal(
        "evt_0123456789abcdef0123456789abcdef",
        "auth_rejected",
        None,
        3,
    );
    let mut channel = refusal(
        "evt_fedcba9876543210fedcba9876543210",
        "channel_refused",
        Some(&id),
        1,
    );
    channel["what"] = "direct-tcpip db-1:22".into();
    channel["reason"] = "host db-1 is not approved by the certificate".into();
    let r = post_events(&app, "tpab_wrong", r#"{"events":[]}"#).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let body = serde_json::json!({ "events": [auth] }).to_string();
    let r = post_events(&app, BASTION_TOKEN, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!({ "stored": 1, "duplicates": 0 })
    );
    // Redelivery after a crash, plus a new report.
    let body = serde_json::json!({ "events": [auth, channel] }).to_string();
    let r = post_events(&app, BASTION_TOKEN, &body).await;
    assert_eq!(
        r.json(),
        serde_json::json!({ "stored": 1, "duplicates": 1 })
    );
    let conn = app.data.open_plain();
    assert_eq!(count(&conn, "bastion_events"), 2);
    let rows: Vec<_> = audit_rows(&conn)
        .into_iter()
        .filter(|r| r.action.starts_with("bastion."))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0].action, "bastion.auth_rejected");
    assert_eq!(rows[0].object, "bastion:bastion-1");
    assert_eq!(rows[0].outcome, "denied");
    assert_eq!(rows[0].actor, "bastion:bastion-1");
    assert!(rows[0].reason.ends_with("(3 times)"), "{}", rows[0].reason);
    assert!(
        rows[0].details.contains("\"client\":\"203.0.113.7\""),
        "{}",
        rows[0].details
    );
    assert_eq!(rows[1].action, "bastion.channel_refused");
    assert_eq!(rows[1].object, format!("request:{id}"));
    assert_eq!(
        rows[1].reason,
        "host db-1 is not approved by the certificate"
    );

    // Invalid reports are refused as a whole; nothing is stored.
    let check = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut e = refusal(
            "evt_00000000000000000000000000000009",
            "auth_rejected",
            None,
            1,
        );
        edit(&mut e);
        serde_json::json!({ "events": [e] }).to_string()
    };
    for body in [
        check(&|e| e["event_id"] = "evt_x".into()),
        check(&|e| e["kind"] = "shrug".into()),
        check(&|e| e["count"] = 0.into()),
        check(&|e| e["request"] = "not-a-request".into()),
        check(&|e| e["reason"] = "two\nlines".into()),
        check(&|e| e["last_at"] = "2026-11-24T08:00:00Z".into()),
        check(&|e| e["extra"] = 1.into()),
    ] {
        let r = post_events(&app, BASTION_TOKEN, &body).await;
        assert!(r.status == 422 || r.status == 400, "{body}: {}", r.body);
    }
    assert_eq!(count(&conn, "bastion_events"), 2);
    app.stop().await;
}
