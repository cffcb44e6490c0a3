//! The request API over real HTTP: the whole flow with bearer tokens, separation
//! of duties on the API path, CSRF for cookie callers, bodies that are too big or
//! malformed, and the long-poll wait that answers when the decision commits.

use std::time::{Duration, Instant};

use crate::helpers::{HOTFIX, PW, count, ed25519_public_key, http_send, spawn_team_app};

#[tokio::test]
async fn full_flow_with_tokens() {
    let app = spawn_team_app().await;
    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app.submit(&alice, HOTFIX).await;

    let inbox = app.get_as(&bob, "/api/v1/requests?scope=inbox").await;
    assert_eq!(inbox.json()["requests"][0]["id"], id.as_str());
    assert_eq!(
        inbox.json()["requests"][0]["still_needed"]["group"],
        "sre-leads"
    );
    let carol_inbox = app.get_as(&carol, "/api/v1/requests?scope=inbox").await;
    assert_eq!(
        carol_inbox.json()["requests"].as_array().unwrap().len(),
        0,
        "stage 2 is not open yet"
    );

    let key = serde_json::json!({ "public_key": ed25519_public_key() }).to_string();
    let early = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(
        (early.status, early.json()["code"].as_str()),
        (409, Some("not_approved"))
    );

    let r = app.approve(&bob, &id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["still_needed"]["group"], "managers");
    let r = app
        .post_as(&carol, &format!("/api/v1/requests/{id}/approve"), "{}")
        .await;
    assert_eq!(r.json()["state"], "approved");
    assert_eq!(r.json()["active"], true);

    let cert = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(cert.status, 200, "{}", cert.body);
    let c = cert.json();
    assert_eq!(c["key_id"], format!("tpa:request={id}:user=alice"));
    assert_eq!(c["principals"], serde_json::json!(["root"]));
    assert!(
        c["certificate"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com ")
    );

    // Another user's request: not found, and audited.
    let theirs = app
        .post_as(&bob, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(theirs.status, 404);
    let seen = app.get_as(&bob, &format!("/api/v1/requests/{id}")).await;
    assert_eq!(seen.status, 200, "an approver of the role may read it");
    let mine = app.get_as(&alice, "/api/v1/requests").await;
    assert_eq!(
        mine.json()["requests"][0]["reason"],
        "INC-9 <script>x</script>",
        "stored as text"
    );
    app.stop().await;
}

#[tokio::test]
async fn self_approval_through_the_api_is_refused() {
    let app = spawn_team_app().await;
    let mallory = app.login("mallory").await;
    let id = app.submit(&mallory, HOTFIX).await;
    let r = app.approve(&mallory, &id).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("own_request"))
    );
    let r = app.deny(&mallory, &id, "x").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("own_request"))
    );
    let alice = app.login("alice").await;
    let r = app.approve(&alice, &id).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_approver"))
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_and_unknown_ids_get_stable_codes() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    let big = format!(
        r#"{{"role":"hotfix-admin","hosts":["web-1"],"reason":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let r = app.post_as(&alice, "/api/v1/requests", &big).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let r = app
        .post_as(&alice, "/api/v1/requests", r#"{"role": "hotfix-admin", "#)
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let r = app
        .post_as(
            &alice,
            "/api/v1/requests",
            r#"{"role":"hotfix-admin","hosts":["web-1"],"colour":"red"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let r = app
        .post_as(
            &alice,
            "/api/v1/requests",
            r#"{"role":"nope","hosts":["web-1"],"reason":"x"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (422, Some("unknown_role"))
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("hotfix-admin"),
        "lists the allowed roles"
    );
    let r = app.post_as(&alice, "/api/v1/requests", r#"{"role":"hotfix-admin","hosts":["web-1"],"duration":"9h","reason":"x","ticket":"INC-1"}"#).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (422, Some("duration_too_long"))
    );
    let r = app
        .get_as(&alice, "/api/v1/requests/req_aaaaaaaaaaaaaaaaaaaaaaaaaa")
        .await;
    assert_eq!(r.status, 404);
    let r = app.get_as(&alice, "/api/v1/requests/..%2F..%2Fetc").await;
    assert_eq!(r.status, 404);
    let r = app
        .get_as(&alice, "/api/v1/requests?scope=everything")
        .await;
    assert_eq!(r.json()["code"], "bad_scope");
    let r = http_send(
        app.address,
        "POST",
        "/api/v1/requests",
        &[("Content-Type", "application/json")],
        HOTFIX,
    )
    .await;
    assert_eq!(r.status, 401);
    let conn = app.data.open_store();
    assert_eq!(
        count(&conn, "requests"),
        0,
        "nothing stored by any bad request"
    );
    app.stop().await;
}

#[tokio::test]
async fn cookie_callers_need_the_csrf_header() {
    let app = spawn_team_app().await;
    let login = http_send(
        app.address,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("username=alice&password={}", PW.replace(' ', "+")),
    )
    .await;
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = http_send(
        app.address,
        "POST",
        "/api/v1/requests",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        HOTFIX,
    )
    .await;
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("csrf")));
    assert_eq!(count(&app.data.open_store(), "requests"), 0);
    app.stop().await;
}

#[tokio::test]
async fn waiting_client_hears_the_decision_at_once() {
    let app = spawn_team_app().await;
    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app.submit(&alice, HOTFIX).await;
    app.approve(&bob, &id).await;
    let address = app.address;
    let path = format!("/api/v1/requests/{id}/wait?timeout=30");
    let auth = format!("Bearer {alice}");
    let waiter = tokio::spawn(async move {
        let r = http_send(address, "GET", &path, &[("Authorization", &auth)], "").await;
        (Instant::now(), r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "still pending: the waiter must wait");
    let decided = Instant::now();
    app.approve(&carol, &id).await;
    let (answered, r) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.json()["state"], "approved");
    assert!(
        answered.duration_since(decided) < Duration::from_secs(2),
        "pushed, not polled"
    );
    // A denied request answers the waiter too, with the comment.
    let id2 = app.submit(&alice, &HOTFIX.replace("web-1", "web-2")).await;
    app.deny(&bob, &id2, "use read-only-debug").await;
    let r = app
        .get_as(
            &app.login("alice").await,
            &format!("/api/v1/requests/{id2}/wait?timeout=5"),
        )
        .await;
    assert_eq!(
        (r.json()["state"].as_str(), r.json()["comment"].as_str()),
        (Some("denied"), Some("use read-only-debug"))
    );
    app.stop().await;
}

// issue 14: reviewing a grant that was not break-glass is a conflict with
// the request's state, 409 as docs/api.md says (the string match answered 422).
#[tokio::test]
async fn reviewing_a_plain_request_is_409_not_break_glass() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.submit(&alice, HOTFIX).await;
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/review"),
            r#"{"comment":"checked"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (409, Some("not_break_glass")),
        "{}",
        r.body
    );
    app.stop().await;
}

#[tokio::test]
async fn break_glass_self_approves_notifies_and_needs_a_review() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let glass = r#"{"role":"hotfix-admin","hosts":["db-1"],"duration":"20m","reason":"site down","ticket":"INC-77","break_glass":true}"#;
    // Without an incident id, or longer than the rule allows: refused.
    let r = app
        .post_as(
            &alice,
            "/api/v1/requests",
            &glass.replace(r#","ticket":"INC-77""#, ""),
        )
        .await;
    assert_eq!(r.json()["code"], "ticket_required");
    let r = app
        .post_as(&alice, "/api/v1/requests", &glass.replace("20m", "1h"))
        .await;
    assert_eq!(r.json()["code"], "duration_too_long");
    // On a role without a break-glass rule: refused.
    let r = app
        .post_as(
            &alice,
            "/api/v1/requests",
            &glass
                .replace("hotfix-admin", "read-only-debug")
                .replace("db-1", "web-1"),
        )
        .await;
    assert_eq!(r.json()["code"], "no_break_glass");

    let r = app.post_as(&alice, "/api/v1/requests", glass).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let request = &r.json()["request"];
    assert_eq!(
        (request["state"].as_str(), request["approval_path"].as_str()),
        (Some("approved"), Some("break_glass"))
    );
    let id = request["id"].as_str().unwrap().to_owned();
    let key = serde_json::json!({ "public_key": ed25519_public_key() }).to_string();
    assert_eq!(
        app.post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
            .await
            .status,
        200
    );

    // The review queue: bob sees it; alice cannot review her own; an empty comment is refused.
    let queue = app.get_as(&bob, "/api/v1/reviews").await;
    assert_eq!(queue.json()["requests"][0]["id"], id.as_str());
    assert_eq!(
        app.get_as(&alice, "/api/v1/reviews").await.json()["requests"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let r = app
        .post_as(
            &alice,
            &format!("/api/v1/requests/{id}/review"),
            r#"{"comment":"fine"}"#,
        )
        .await;
    assert_eq!(r.json()["code"], "own_request");
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/review"),
            r#"{"comment":"  "}"#,
        )
        .await;
    assert_eq!(r.json()["code"], "bad_comment");
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/review"),
            r#"{"comment":"checked the shell history"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/review"),
            r#"{"comment":"again"}"#,
        )
        .await;
    assert_eq!(r.json()["code"], "already_reviewed");
    // issue 14: a conflict with the review's state is 409, as docs/api.md
    // says (the string match answered 422).
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        app.get_as(&bob, "/api/v1/reviews").await.json()["requests"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Audit marks every step; the outbox announced the break-glass grant.
    let conn = app.data.open_store();
    let marked: i64 = conn
        .one("SELECT count(*) FROM audit_events WHERE object = ?1 AND action IN ('request.break_glass', 'request.review') AND outcome = 'success'", &[&format!("request:{id}")]);
    assert_eq!(marked, 2);
    let announced: i64 = conn.one(
        "SELECT count(*) FROM outbox WHERE kind = 'request.break_glass'",
        &[],
    );
    assert_eq!(announced, 1);
    // Reviews count toward the decision rate limit like approvals (30 per user per minute).
    let mut limited = false;
    for _ in 0..35 {
        let r = app
            .post_as(
                &bob,
                &format!("/api/v1/requests/{id}/review"),
                r#"{"comment":"again"}"#,
            )
            .await;
        if r.status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "review decisions must be rate-limited");
    app.stop().await;
}

#[tokio::test]
async fn revoked_grant_issues_nothing_more() {
    let app = spawn_team_app().await;
    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app.submit(&alice, HOTFIX).await;
    app.approve(&bob, &id).await;
    app.approve(&carol, &id).await;
    let key = serde_json::json!({ "public_key": ed25519_public_key() }).to_string();
    assert_eq!(
        app.post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
            .await
            .status,
        200
    );
    // The requester is no approver of the role: refused. An approver revokes.
    let r = app
        .post_as(
            &alice,
            &format!("/api/v1/requests/{id}/revoke"),
            r#"{"comment":"mine"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_approver"))
    );
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/revoke"),
            r#"{"comment":"incident closed"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("revoked")),
        "{}",
        r.body
    );
    let r = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (409, Some("not_approved"))
    );
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{id}/revoke"),
            r#"{"comment":"again"}"#,
        )
        .await;
    assert_eq!(r.json()["code"], "not_active");
    app.stop().await;
}
