//! The auditor's view over real HTTP: the audit log with its filters and
//! pages, request timelines, certificates and sessions, as JSON and as pages;
//! only `[auditors]` members may read them, and the role grants nothing that
//! changes state (issue 7, item 3).

use sha2::{Digest as _, Sha256};

use crate::helpers::{HOTFIX, PW, spawn_team_app_with};
use crate::helpers::{Response, TestApp, ed25519_public_key, http_send};

const BASTION_TOKEN: &str = "tpab_auditor-test-bastion-token-0123456789";

/// alice, bob, carol, mallory (requests_http) plus dave (auditor) and
/// erin (auditor and SRE lead), a bastion, and `[auditors]`.
async fn auditor_app() -> TestApp {
    let hash = hex::encode(Sha256::digest(BASTION_TOKEN.as_bytes()));
    spawn_team_app_with(move |data| {
        data.add_account("dave", PW, &["auditors"]);
        data.add_account("erin", PW, &["auditors", "sre-leads"]);
        data.edit_config(|text| {
            format!(
                "{text}\n[auditors]\ngroups = [\"auditors\"]\n\n[[bastions]]\nname = \"bastion-1\"\ntoken_hash = \"{hash}\"\n"
            )
        });
    })
    .await
}

/// An approved hotfix request for alice with one certificate and one
/// bastion session; returns (request id, certificate serial).
async fn granted_with_a_session(app: &TestApp) -> (String, String) {
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
    let serial = r.json()["serial"].as_str().unwrap().to_owned();
    let record = serde_json::json!({ "records": [{
        "session_id": "ses_0123456789abcdef0123456789abcdef",
        "serial": serial,
        "key_id": format!("tpa:request={id}:user=alice"),
        "request": id,
        "login": "root",
        "requester": "alice",
        "source": "127.0.0.1:50000",
        "target": "web-1",
        "target_address": "127.0.0.1:2222",
        "started_at": "2026-11-24T09:00:00.000000Z",
        "ended_at": "2026-11-24T09:01:00.000000Z",
        "bytes_to_target": 1200,
        "bytes_from_target": 3400,
        "end": "client_closed",
    }]});
    let r = app
        .post_as(BASTION_TOKEN, "/api/v1/sessions", &record.to_string())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (id, serial)
}

/// A browser session cookie for `user` (the login form).
async fn cookie(app: &TestApp, user: &str) -> String {
    let r = http_send(
        app.address,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "null"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &format!("username={user}&password={}", PW.replace(' ', "+")),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r.header("set-cookie").unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> Response {
    http_send(app.address, "GET", path, &[("Cookie", cookie)], "").await
}

fn actions(page: &serde_json::Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn only_auditors_read_the_trail_and_the_role_changes_nothing() {
    let app = auditor_app().await;
    let (id, serial) = granted_with_a_session(&app).await;
    let (alice, bob, dave) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("dave").await,
    );
    let paths = [
        "/api/v1/audit".to_owned(),
        "/api/v1/certificates".to_owned(),
        "/api/v1/sessions".to_owned(),
        format!("/api/v1/requests/{id}/timeline"),
    ];
    for path in &paths {
        // The requester and an approver of the request: 403, even for their own.
        for t in [&alice, &bob] {
            let r = app.get_as(t, path).await;
            assert_eq!(
                (r.status, r.json()["code"].as_str()),
                (403, Some("not_auditor")),
                "{path}: {}",
                r.body
            );
        }
        let r = http_send(app.address, "GET", path, &[], "").await;
        assert_eq!(r.status, 401, "{path}");
        let r = app.get_as(&dave, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    let log = app.get_as(&dave, "/api/v1/audit").await.json();
    let seqs: Vec<i64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let first = &log["events"][0];
    assert_eq!(
        first["action"], "auth.login",
        "dave's own login is the newest"
    );
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);
    assert!(actions(&log).iter().any(|a| a == "session.record"));

    let certs = app.get_as(&dave, "/api/v1/certificates").await.json();
    let cert = &certs["certificates"][0];
    assert_eq!(cert["serial"].as_str(), Some(serial.as_str()));
    assert_eq!(cert["request_id"].as_str(), Some(id.as_str()));
    assert_eq!(cert["principals"], serde_json::json!(["root"]));
    assert_eq!(cert["revoked"], false);

    let sessions = app.get_as(&dave, "/api/v1/sessions").await.json();
    let s = &sessions["sessions"][0];
    assert_eq!(
        (
            s["session_id"].as_str(),
            s["bytes_from_target"].as_i64(),
            s["end_reason"].as_str()
        ),
        (
            Some("ses_0123456789abcdef0123456789abcdef"),
            Some(3400),
            Some("client_closed")
        )
    );

    // The timeline: request → approvals → certificate → session → revocation.
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/revoke"),
            r#"{"comment":"INC over"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = app
        .get_as(&dave, &format!("/api/v1/requests/{id}/timeline"))
        .await
        .json();
    assert_eq!(
        actions(&t),
        [
            "request.submit",
            "request.approve",
            "request.approve",
            "cert.issue",
            "session.record",
            "request.revoke"
        ]
    );
    assert_eq!(t["request"]["state"], "revoked");
    assert_eq!(
        t["certificates"][0]["serial"].as_str(),
        Some(serial.as_str())
    );
    assert_eq!(t["certificates"][0]["revoked"], true);
    assert_eq!(
        t["sessions"][0]["session_id"],
        "ses_0123456789abcdef0123456789abcdef"
    );
    let r = app
        .get_as(
            &dave,
            "/api/v1/requests/req_doesnotexist0000000000/timeline",
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The auditor role grants no decision: dave cannot approve or see the
    // request page; erin approves as an SRE lead, not as an auditor.
    let id2 = app.submit(&alice, &HOTFIX.replace("INC-9", "INC-10")).await;
    let r = app.approve(&dave, &id2).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_approver")),
        "{}",
        r.body
    );
    let r = app.get_as(&dave, &format!("/api/v1/requests/{id2}")).await;
    assert_eq!(r.status, 404);
    let erin = app.login("erin").await;
    let r = app.approve(&erin, &id2).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Pages: auditors see them, with the nav links and no state-changing form
    // but logout; others get a 403 page; anonymous visitors go to /login.
    let dave_cookie = cookie(&app, "dave").await;
    let alice_cookie = cookie(&app, "alice").await;
    let pages = [
        "/audit".to_owned(),
        "/audit/certificates".to_owned(),
        "/audit/sessions".to_owned(),
        format!("/audit/requests/{id}"),
    ];
    for path in &pages {
        let r = page(&app, &dave_cookie, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.header("content-security-policy").is_some());
        assert!(r.body.contains("id=\"nav-audit\""), "{path}");
        assert_eq!(
            r.body.matches("method=\"post\"").count(),
            1,
            "{path}: only logout posts"
        );
        assert!(r.body.contains("action=\"/logout\""), "{path}");
        let r = page(&app, &alice_cookie, path).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let r = http_send(app.address, "GET", path, &[], "").await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/login")),
            "{path}"
        );
    }
    let home = page(&app, &alice_cookie, "/").await;
    assert!(
        !home.body.contains("nav-audit"),
        "non-auditors get no audit links"
    );
    let timeline = page(&app, &dave_cookie, &format!("/audit/requests/{id}")).await;
    for part in [
        serial.as_str(),
        "ses_0123456789abcdef0123456789abcdef",
        "request.revoke",
        "1200 / 3400",
        "client_closed",
        "INC over",
    ] {
        assert!(timeline.body.contains(part), "timeline lacks {part}");
    }
    assert!(!timeline.body.contains("<script>x"), "escaped");
    app.stop().await;
}

#[tokio::test]
async fn audit_log_filters_and_pages() {
    let app = auditor_app().await;
    let (id, _serial) = granted_with_a_session(&app).await;
    let alice = app.login("alice").await;
    let debug = app.submit(&alice,
        r#"{"role":"read-only-debug","hosts":["web-2"],"duration":"1h","reason":"look at logs"}"#,
    )
    .await;
    let dave = app.login("dave").await;
    let q = |query: &str| {
        let path = format!("/api/v1/audit?{query}");
        let app = &app;
        let dave = dave.clone();
        async move {
            let r = app.get_as(&dave, &path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            r.json()
        }
    };
    let objects = |page: &serde_json::Value| -> Vec<String> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["object"].as_str().unwrap().to_owned())
            .collect()
    };

    let by_role = q("role=read-only-debug").await;
    let debug_object = format!("request:{debug}");
    assert!(
        objects(&by_role).iter().all(|o| *o == debug_object),
        "{by_role}"
    );
    assert_eq!(
        actions(&by_role).last().map(String::as_str),
        Some("request.submit")
    );
    let debug_events = actions(&by_role).len();
    // A host of the hotfix request: its events and its certificate's issuance.
    let by_host = q("host=web-1").await;
    assert_eq!(
        actions(&by_host),
        [
            "session.record",
            "cert.issue",
            "request.approve",
            "request.approve",
            "request.submit"
        ]
    );
    assert_eq!(actions(&q("host=web-2").await).len(), debug_events);
    assert!(
        q("host=db-9").await["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A user: what bob did, and everything about alice's requests.
    let by_bob = q("user=bob").await;
    assert!(
        actions(&by_bob).iter().any(|a| a == "request.approve"),
        "{by_bob}"
    );
    assert!(by_bob["events"].as_array().unwrap().iter().all(|e| {
        e["actor"].as_str().unwrap().ends_with("#bob") || e["object"] == format!("request:{id}")
    }));
    let by_alice = q("user=alice&action=request.").await;
    assert_eq!(
        by_alice["events"].as_array().unwrap().len(),
        3 + debug_events,
        "{by_alice}"
    );
    assert_eq!(actions(&q("action=cert.issue").await), ["cert.issue"]);
    assert!(q("action=cert.").await["events"].as_array().unwrap().len() == 1);
    // Time range.
    assert!(
        q("from=2999-01-01").await["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        q("to=2000-01-01T00:00").await["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let all = q("from=2000-01-01&to=2999-01-01T00:00:00Z&limit=200").await;
    let total = all["events"].as_array().unwrap().len();
    assert!(total >= 10, "{all}");
    assert!(all.get("next_before").is_none());
    // Pages of 3 walk the whole log backwards without overlap.
    let mut seen = vec![];
    let mut query = "limit=3".to_owned();
    for _ in 0..100 {
        let page = q(&query).await;
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["seq"].as_i64().unwrap()),
        );
        match page["next_before"].as_i64() {
            Some(before) => query = format!("limit=3&before={before}"),
            None => break,
        }
    }
    let expected: Vec<i64> = (1..=i64::try_from(total).unwrap()).rev().collect();
    assert_eq!(seen, expected);
    // Bad filters are named.
    for (query, field) in [
        ("from=yesterday", "from"),
        ("before=x", "before"),
        ("action=DROP%20TABLE", "action"),
        ("colour=red", "colour"),
    ] {
        let r = app.get_as(&dave, &format!("/api/v1/audit?{query}")).await;
        assert!(r.status == 422 || r.status == 400, "{query}: {}", r.body);
        assert!(
            r.json()["message"].as_str().unwrap().contains(field),
            "{query}: {}",
            r.body
        );
    }
    // The page shows the same filter and links to the older page.
    let dave_cookie = cookie(&app, "dave").await;
    let r = page(&app, &dave_cookie, "/audit?role=read-only-debug&limit=1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("value=\"read-only-debug\""));
    assert_eq!(r.body.matches("class=\"event\"").count(), 1);
    assert!(r.body.contains("id=\"older\""), "{}", r.body);
    let r = page(&app, &dave_cookie, "/audit?from=yesterday").await;
    assert_eq!(r.status, 422, "{}", r.body);
    app.stop().await;
}

/// Issue 7: a certificate revoked by serial (its request still active) is
/// shown revoked to auditors, and auditors read the access report while a
/// requester cannot.
#[tokio::test]
async fn auditors_see_serial_revocations_and_read_the_access_report() {
    let app = auditor_app().await;
    let (id, serial) = granted_with_a_session(&app).await;
    let dave = app.login("dave").await;
    let revoked = |certs: &serde_json::Value| {
        certs["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["serial"] == serial.as_str())
            .map(|c| c["revoked"].clone())
    };
    let certs = app.get_as(&dave, "/api/v1/certificates").await.json();
    assert_eq!(revoked(&certs), Some(serde_json::json!(false)));

    let (code, _, stderr) = crate::helpers::run(
        crate::helpers::tpa_ca()
            .args(["revoke", "serial", &serial, "--reason", "laptop stolen"])
            .args(["--admin", "oncall", "--config"])
            .arg(&app.data.config_path),
    );
    assert_eq!(code, 0, "{stderr}");
    let state = app
        .get_as(&dave, &format!("/api/v1/requests/{id}/timeline"))
        .await;
    assert_eq!(state.status, 200, "{}", state.body);
    let certs = app.get_as(&dave, "/api/v1/certificates").await.json();
    assert_eq!(revoked(&certs), Some(serde_json::json!(true)));

    let path = "/api/v1/reports/access?since=2020-01-01T00:00:00Z";
    let r = app.get_as(&dave, path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let grants = r.json()["grants"].as_array().unwrap().clone();
    assert_eq!(grants.len(), 1, "{}", r.body);
    assert_eq!(grants[0]["request"], id.as_str());
    let alice = app.login("alice").await;
    let r = app.get_as(&alice, path).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_auditor")),
        "{}",
        r.body
    );
    app.stop().await;
}
