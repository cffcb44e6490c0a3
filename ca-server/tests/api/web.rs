//! The web approval pages over real HTTP: the inbox, the request page and its
//! forms (approve, deny, cancel), my requests, history, the new-request form,
//! CSRF, escaping, visibility and the decision rate limit. Issue 3, item 8.

use ca_server::config::EXAMPLE_ROLES;

use crate::helpers::{Response, TestApp, audit_rows, http_send, spawn_app_with};

const PASSWORD: &str = "demo password";

/// A server with the brief's roles and alice (requester), bob (SRE lead),
/// carol (manager) and dave (auditor); `alice_groups` are alice's groups.
async fn app_with(alice_groups: &[&str]) -> TestApp {
    spawn_app_with(|data| {
        data.edit_config(|text| format!("{text}{EXAMPLE_ROLES}"));
        data.add_account("alice", PASSWORD, alice_groups);
        data.add_account("bob", PASSWORD, &["sre-leads"]);
        data.add_account("carol", PASSWORD, &["managers"]);
        data.add_account("dave", PASSWORD, &["auditors"]);
    })
    .await
}

async fn app() -> TestApp {
    app_with(&["engineers"]).await
}

/// Alice submits a hotfix-admin request through the JSON API; returns its id.
async fn submit_hotfix(app: &TestApp, reason: &str) -> String {
    let token = app.login_as("alice", PASSWORD).await;
    let body = serde_json::json!({
        "role": "hotfix-admin",
        "hosts": ["web-1", "db-1"],
        "duration": "2h",
        "reason": reason,
        "ticket": "INC-4411",
    })
    .to_string();
    app.submit(&token, &body).await
}

/// The request as the API shows it to alice.
async fn api_state(app: &TestApp, id: &str) -> serde_json::Value {
    let token = app.login_as("alice", PASSWORD).await;
    let r = app.get_as(&token, &format!("/api/v1/requests/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn assert_html(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(
        r.header("content-type").unwrap().starts_with("text/html"),
        "{r:?}"
    );
    assert!(r.header("content-security-policy").is_some(), "{r:?}");
}

#[tokio::test]
async fn inbox_shows_a_pending_request_to_its_approver_only() {
    let app = app().await;
    let id = submit_hotfix(&app, "INC-4411 disk full").await;
    let bob = app.browser("bob", PASSWORD).await;
    let alice = app.browser("alice", PASSWORD).await;
    let carol = app.browser("carol", PASSWORD).await;

    let inbox = app.page(&bob, "/").await;
    assert_html(&inbox, 200);
    for text in [
        id.as_str(),
        "alice",
        "hotfix-admin",
        "web-1",
        "db-1",
        "2h",
        "INC-4411 disk full",
        "just now",
        "stage 1 of 2: 1 more needed from sre-leads",
    ] {
        assert!(
            inbox.body.contains(text),
            "{text:?} missing: {}",
            inbox.body
        );
    }
    assert!(inbox.body.contains("src=\"/static/refresh.js\""));

    let theirs = app.page(&alice, "/").await;
    assert_html(&theirs, 200);
    assert!(!theirs.body.contains(&id), "{}", theirs.body);
    assert!(
        theirs.body.contains("You approve no roles"),
        "{}",
        theirs.body
    );
    assert!(theirs.body.contains("href=\"/my\""));
    // Carol decides stage 2, which is not open yet.
    assert!(!app.page(&carol, "/").await.body.contains(&id));
    // Alice finds it under her own requests; bob in history.
    assert!(app.page(&alice, "/my").await.body.contains(&id));
    assert!(app.page(&bob, "/history").await.body.contains(&id));
    assert!(!app.page(&bob, "/my").await.body.contains(&id));
    app.stop().await;
}

#[tokio::test]
async fn approve_via_the_form_redirects_and_moves_the_request_on() {
    let app = app().await;
    let id = submit_hotfix(&app, "INC-4411 disk full").await;
    let bob = app.browser("bob", PASSWORD).await;
    let detail = app.page(&bob, &format!("/requests/{id}")).await;
    assert_html(&detail, 200);
    assert!(detail.body.contains("id=\"approve\""), "{}", detail.body);
    assert!(detail.body.contains("id=\"deny\""));
    assert!(!detail.body.contains("id=\"cancel\""));

    let r = app
        .post_form(&bob, &format!("/requests/{id}/approve"), &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    // issue 11: the redirect names the decision so the page can say what it did.
    assert_eq!(
        r.header("location"),
        Some(format!("/requests/{id}?decided=approve").as_str())
    );
    let after = app.page(&bob, &format!("/requests/{id}")).await;
    assert!(
        after
            .body
            .contains("stage 2 of 2: 1 more needed from managers"),
        "{}",
        after.body
    );
    assert!(
        !after.body.contains("id=\"approve\""),
        "bob approved already"
    );
    assert_eq!(
        api_state(&app, &id).await["approvals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Carol approves stage 2, narrowing to one host and a shorter window.
    let carol = app.browser("carol", PASSWORD).await;
    let r = app
        .post_form(
            &carol,
            &format!("/requests/{id}/approve"),
            &[
                ("host_choice", "1"),
                ("hosts", "web-1"),
                ("duration", "30m"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let state = api_state(&app, &id).await;
    assert_eq!(state["state"], "approved");
    assert_eq!(state["hosts"], serde_json::json!(["web-1"]));
    assert_eq!(state["duration"], "30m");
    let done = app.page(&carol, &format!("/requests/{id}")).await;
    assert!(done.body.contains(">approved<"), "{}", done.body);
    assert!(
        done.body.contains(" UTC to "),
        "window shown in UTC: {}",
        done.body
    );
    app.stop().await;
}

#[tokio::test]
async fn self_approval_via_the_web_form_is_refused() {
    // Alice is in every group, approver groups included.
    let app = app_with(&["engineers", "sre-leads", "managers"]).await;
    let id = submit_hotfix(&app, "INC-4411 disk full").await;
    let alice = app.browser("alice", PASSWORD).await;
    let detail = app.page(&alice, &format!("/requests/{id}")).await;
    assert!(!detail.body.contains("id=\"approve\""), "{}", detail.body);
    assert!(detail.body.contains("id=\"cancel\""), "{}", detail.body);

    let r = app
        .post_form(&alice, &format!("/requests/{id}/approve"), &[])
        .await;
    assert_html(&r, 403);
    assert!(r.body.contains("id=\"error\""), "{}", r.body);
    assert!(r.body.contains("own"), "{}", r.body);
    assert_eq!(api_state(&app, &id).await["state"], "pending");
    assert!(
        audit_rows(&app.data.open_plain())
            .iter()
            .any(|e| e.action == "request.approve" && e.outcome == "denied"),
        "the refusal is audited"
    );
    app.stop().await;
}

#[tokio::test]
async fn posts_without_the_csrf_token_or_from_other_sites_are_refused() {
    let app = app().await;
    let id = submit_hotfix(&app, "INC-4411 disk full").await;
    let bob = app.browser("bob", PASSWORD).await;
    let path = format!("/requests/{id}/approve");

    let missing = app.post_raw(&bob, &path, &[]).await;
    let wrong = app.post_raw(&bob, &path, &[("csrf_token", "nope")]).await;
    for r in [&missing, &wrong] {
        assert_html(r, 403);
        assert!(r.body.contains("csrf"), "{}", r.body);
    }
    let cross = http_send(
        app.address,
        "POST",
        &path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &bob.cookie),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        &format!("csrf_token={}", bob.csrf),
    )
    .await;
    assert_html(&cross, 403);
    let null_origin = http_send(
        app.address,
        "POST",
        &path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &bob.cookie),
            ("Origin", "null"),
        ],
        &format!("csrf_token={}", bob.csrf),
    )
    .await;
    assert_html(&null_origin, 403);
    assert!(
        null_origin.body.contains("cross_site"),
        "{}",
        null_origin.body
    );
    let anonymous = http_send(
        app.address,
        "POST",
        &path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "csrf_token=x",
    )
    .await;
    assert_eq!(
        (anonymous.status, anonymous.header("location")),
        (303, Some("/login"))
    );
    assert_eq!(
        api_state(&app, &id).await["approvals"],
        serde_json::json!([])
    );
    app.stop().await;
}

#[tokio::test]
async fn deny_with_a_comment_and_cancel_by_the_requester() {
    let app = app().await;
    let id = submit_hotfix(&app, "INC-4411 disk full").await;
    let bob = app.browser("bob", PASSWORD).await;
    let r = app
        .post_form(
            &bob,
            &format!("/requests/{id}/deny"),
            &[("comment", "use the runbook <b>first</b>")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let state = api_state(&app, &id).await;
    assert_eq!(state["state"], "denied");
    assert_eq!(state["comment"], "use the runbook <b>first</b>");
    let page = app.page(&bob, &format!("/requests/{id}")).await;
    assert!(
        page.body
            .contains("use the runbook &lt;b&gt;first&lt;&#x2f;b&gt;"),
        "{}",
        page.body
    );
    // Deciding it again is refused with the API's status (409), as a page.
    let again = app
        .post_form(&bob, &format!("/requests/{id}/approve"), &[])
        .await;
    assert_html(&again, 409);

    let other = submit_hotfix(&app, "INC-4412 cache").await;
    let alice = app.browser("alice", PASSWORD).await;
    let r = app
        .post_form(&alice, &format!("/requests/{other}/cancel"), &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(api_state(&app, &other).await["state"], "cancelled");
    app.stop().await;
}

#[tokio::test]
async fn a_script_in_the_reason_is_shown_as_text() {
    let app = app().await;
    let id = submit_hotfix(&app, "<script>alert(1)</script>").await;
    let bob = app.browser("bob", PASSWORD).await;
    for path in [
        format!("/requests/{id}"),
        "/".to_owned(),
        "/history".to_owned(),
    ] {
        let page = app.page(&bob, &path).await;
        assert_html(&page, 200);
        assert!(
            page.body
                .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("<script>"), "{path}: {}", page.body);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_non_viewer_gets_404() {
    let app = app().await;
    let id = submit_hotfix(&app, "INC-4411 disk full").await;
    let dave = app.browser("dave", PASSWORD).await;
    for path in [
        format!("/requests/{id}"),
        "/requests/req_aaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
        "/requests/not-an-id".to_owned(),
    ] {
        let r = app.page(&dave, &path).await;
        assert_html(&r, 404);
        assert!(!r.body.contains("INC-4411"), "{}", r.body);
    }
    let r = app
        .post_form(&dave, &format!("/requests/{id}/approve"), &[])
        .await;
    assert_html(&r, 404);
    assert!(!app.page(&dave, "/history").await.body.contains(&id));
    let anonymous = app.get(&format!("/requests/{id}")).await;
    assert_eq!(
        (anonymous.status, anonymous.header("location")),
        (303, Some("/login"))
    );
    app.stop().await;
}

#[tokio::test]
async fn decisions_are_rate_limited_per_user_across_web_and_api() {
    let app = app().await;
    let id = submit_hotfix(&app, "INC-4411 disk full").await;
    let token = app.login_as("bob", PASSWORD).await;
    let auth = format!("Bearer {token}");
    // 30 decisions in a minute through the API: one approval, then refusals
    // (bob approved already); refusals count too.
    for i in 0..30 {
        let r = http_send(
            app.address,
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            &[("Authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(r.status, if i == 0 { 200 } else { 409 }, "{i}: {}", r.body);
    }
    let bob = app.browser("bob", PASSWORD).await;
    let web = app
        .post_form(&bob, &format!("/requests/{id}/deny"), &[("comment", "x")])
        .await;
    assert_html(&web, 429);
    assert!(web.header("retry-after").is_some(), "{web:?}");
    let api = http_send(
        app.address,
        "POST",
        &format!("/api/v1/requests/{id}/deny"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"comment":"x"}"#,
    )
    .await;
    assert_eq!(api.status, 429, "{}", api.body);
    assert_eq!(api.json()["code"], "rate_limited");
    assert_eq!(api_state(&app, &id).await["state"], "pending");
    // Other users are not affected.
    let carol = app.browser("carol", PASSWORD).await;
    let r = app
        .post_form(&carol, &format!("/requests/{id}/approve"), &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn the_new_request_form_submits_and_refusals_show_the_form_again() {
    let app = app().await;
    let alice = app.browser("alice", PASSWORD).await;
    let form = app.page(&alice, "/requests/new").await;
    assert_html(&form, 200);
    assert!(
        form.body.contains("value=\"hotfix-admin\""),
        "{}",
        form.body
    );
    assert!(form.body.contains("value=\"read-only-debug\""));
    let bob = app.browser("bob", PASSWORD).await;
    let none = app.page(&bob, "/requests/new").await;
    assert!(
        !none.body.contains("value=\"hotfix-admin\""),
        "{}",
        none.body
    );

    let bad = app
        .post_form(
            &alice,
            "/requests",
            &[
                ("role", "hotfix-admin"),
                ("hosts", "web-1"),
                ("duration", "9h"),
                ("reason", "keep <this>"),
                ("ticket", "INC-1"),
            ],
        )
        .await;
    assert_html(&bad, 422);
    assert!(bad.body.contains("id=\"error\""), "{}", bad.body);
    assert!(
        bad.body.contains("keep &lt;this&gt;"),
        "kept the input: {}",
        bad.body
    );

    let ok = app
        .post_form(
            &alice,
            "/requests",
            &[
                ("role", "hotfix-admin"),
                ("hosts", "web-1, db-1"),
                ("duration", "1h"),
                ("reason", "INC-1 fix"),
                ("ticket", "INC-1"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let location = ok.header("location").unwrap().to_owned();
    let id = location.strip_prefix("/requests/").unwrap();
    let state = api_state(&app, id).await;
    assert_eq!(state["state"], "pending");
    assert_eq!(state["hosts"], serde_json::json!(["db-1", "web-1"]));
    assert!(app.page(&bob, "/").await.body.contains(id));
    app.stop().await;
}

#[tokio::test]
async fn break_glass_review_queue_on_the_web_page() {
    let app = app().await;
    let token = app.login_as("alice", PASSWORD).await;
    let body = serde_json::json!({
        "role": "hotfix-admin", "hosts": ["db-1"], "duration": "15m",
        "reason": "site <down>", "ticket": "INC-9", "break_glass": true,
    })
    .to_string();
    let r = http_send(
        app.address,
        "POST",
        "/api/v1/requests",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {token}")),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();

    let bob = app.browser("bob", PASSWORD).await;
    let queue = app.page(&bob, "/reviews").await;
    assert_html(&queue, 200);
    assert!(
        queue.body.contains(&format!("data-id=\"{id}\"")),
        "{}",
        queue.body
    );
    assert!(queue.body.contains("site &lt;down&gt;"), "escaped");
    let alice = app.browser("alice", PASSWORD).await;
    assert!(
        app.page(&alice, "/reviews")
            .await
            .body
            .contains("id=\"empty\""),
        "the requester does not review"
    );

    let path = format!("/requests/{id}/review");
    let r = app.post_raw(&bob, &path, &[("comment", "fine")]).await;
    assert_eq!(r.status, 403, "no CSRF token");
    let r = app.post_form(&bob, &path, &[("comment", " ")]).await;
    assert_html(&r, 422);
    assert!(r.body.contains("comment"), "{}", r.body);
    let r = app
        .post_form(&alice, &path, &[("comment", "mine is fine")])
        .await;
    assert_html(&r, 403);
    let r = app
        .post_form(&bob, &path, &[("comment", "checked the session log")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        app.page(&bob, "/reviews")
            .await
            .body
            .contains("id=\"empty\"")
    );
    let reviews = audit_rows(&app.data.open_store())
        .into_iter()
        .filter(|e| e.action == "request.review" && e.outcome == "success")
        .count();
    assert_eq!(reviews, 1);
    app.stop().await;
}

/// Issue #7: approvers of the role and administrators (auth.admin_groups) get
/// a revoke form with a confirmation step on the request page; others do not.
/// Administrators also revoke by user through `POST /api/v1/revocations`.
#[tokio::test]
async fn revoke_button_for_approvers_and_admins_with_a_confirm_step() {
    let app = spawn_app_with(|data| {
        data.edit_config(|text| {
            format!("{text}{EXAMPLE_ROLES}")
                .replace("admin_groups = []", "admin_groups = [\"security\"]")
        });
        data.add_account("alice", PASSWORD, &["engineers"]);
        data.add_account("bob", PASSWORD, &["sre-leads"]);
        data.add_account("carol", PASSWORD, &["managers"]);
        data.add_account("erin", PASSWORD, &["security"]);
    })
    .await;
    let token = app.login_as("alice", PASSWORD).await;
    let grant = |host: &'static str| {
        let token = token.clone();
        let address = app.address;
        async move {
            let body = serde_json::json!({
                "role": "read-only-debug", "hosts": [host], "duration": "30m", "reason": "logs",
            })
            .to_string();
            let r = http_send(
                address,
                "POST",
                "/api/v1/requests",
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &format!("Bearer {token}")),
                ],
                &body,
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.body);
            assert_eq!(r.json()["request"]["state"], "approved");
            r.json()["request"]["id"].as_str().unwrap().to_owned()
        }
    };
    let first = grant("web-1").await;
    let second = grant("web-2").await;
    let hotfix = submit_hotfix(&app, "INC-1 pending").await;

    let (alice, bob, carol, erin) = (
        app.browser("alice", PASSWORD).await,
        app.browser("bob", PASSWORD).await,
        app.browser("carol", PASSWORD).await,
        app.browser("erin", PASSWORD).await,
    );
    let path = format!("/requests/{first}");
    assert!(
        app.page(&bob, &path)
            .await
            .body
            .contains("id=\"revoke-form\"")
    );
    assert!(
        app.page(&erin, &path)
            .await
            .body
            .contains("id=\"revoke-form\"")
    );
    assert!(
        !app.page(&alice, &path)
            .await
            .body
            .contains("id=\"revoke-form\"")
    );
    assert_eq!(app.page(&carol, &path).await.status, 404);
    // Pending requests have nothing to revoke.
    let pending = app.page(&erin, &format!("/requests/{hotfix}")).await;
    assert_html(&pending, 200);
    assert!(!pending.body.contains("id=\"revoke-form\""));

    // Without the confirmation box: refused, nothing changes.
    let r = app
        .post_form(&bob, &format!("{path}/revoke"), &[("comment", "INC-3")])
        .await;
    assert_html(&r, 422);
    assert!(r.body.contains("confirmation"), "{}", r.body);
    assert_eq!(api_state(&app, &first).await["state"], "approved");
    // The requester cannot revoke through this form.
    let r = app
        .post_form(
            &alice,
            &format!("{path}/revoke"),
            &[("comment", "x"), ("confirm", "yes")],
        )
        .await;
    assert_html(&r, 403);
    // Without the CSRF token: refused.
    let r = app
        .post_raw(
            &bob,
            &format!("{path}/revoke"),
            &[("comment", "x"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    let r = app
        .post_form(
            &bob,
            &format!("{path}/revoke"),
            &[("comment", "INC-3 done"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(api_state(&app, &first).await["state"], "revoked");
    // The administrator revokes the other grant the same way.
    let r = app
        .post_form(
            &erin,
            &format!("/requests/{second}/revoke"),
            &[("comment", "security sweep"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(api_state(&app, &second).await["state"], "revoked");
    let rows = audit_rows(&app.data.open_plain());
    let revokes: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "request.revoke" && r.outcome == "success")
        .map(|r| (r.actor.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        revokes,
        [
            ("user:tpa:local#bob", "INC-3 done"),
            ("user:tpa:local#erin", "security sweep")
        ]
    );

    // The JSON API: administrators only.
    let revoke_user = |who: String| {
        let address = app.address;
        async move {
            http_send(
                address,
                "POST",
                "/api/v1/revocations",
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &format!("Bearer {who}")),
                ],
                r#"{"user":"alice","reason":"offboarding"}"#,
            )
            .await
        }
    };
    let r = revoke_user(app.login_as("bob", PASSWORD).await).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_admin")),
        "{}",
        r.body
    );
    // The refusal is a security decision: audited, with who and what
    // (security review 2026-11-24).
    let denied: Vec<_> = audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|e| e.action == "user.revoke" && e.outcome == "denied")
        .map(|e| (e.actor, e.object))
        .collect();
    assert_eq!(
        denied,
        [("user:tpa:local#bob".to_owned(), "user:alice".to_owned())]
    );
    let third = grant("web-3").await;
    let alice_token = app.login_as("alice", PASSWORD).await;
    let whoami = |token: String| {
        let address = app.address;
        async move {
            http_send(
                address,
                "GET",
                "/api/v1/whoami",
                &[("Authorization", &format!("Bearer {token}"))],
                "",
            )
            .await
        }
    };
    assert_eq!(whoami(alice_token.clone()).await.status, 200);
    let r = revoke_user(app.login_as("erin", PASSWORD).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["kind"], "user");
    // Her API tokens and web sessions end with her grants.
    assert_eq!(whoami(alice_token).await.status, 401);
    // alice's pending hotfix request ends too (security review 2026-11-24).
    assert_eq!(
        r.json()["requests_ended"],
        serde_json::json!([hotfix, third])
    );
    assert_eq!(api_state(&app, &hotfix).await["state"], "revoked");
    // `api_state` logged alice in again: a second revocation ends that login
    // and nothing else; a third finds nothing left.
    let r = revoke_user(app.login_as("erin", PASSWORD).await).await;
    assert_eq!(r.json()["already_revoked"], false, "{}", r.body);
    assert_eq!(r.json()["certificates_revoked"], 0, "{}", r.body);
    assert_eq!(r.json()["requests_ended"], serde_json::json!([]));
    let r = revoke_user(app.login_as("erin", PASSWORD).await).await;
    assert_eq!(r.json()["already_revoked"], true, "{}", r.body);

    // The access report over the API: administrators only.
    let report = |who: String| {
        let address = app.address;
        async move {
            http_send(
                address,
                "GET",
                "/api/v1/reports/access?since=2020-01-01T00:00:00Z",
                &[("Authorization", &format!("Bearer {who}"))],
                "",
            )
            .await
        }
    };
    assert_eq!(
        report(app.login_as("bob", PASSWORD).await).await.status,
        403
    );
    let r = report(app.login_as("erin", PASSWORD).await).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ended: Vec<String> = r.json()["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["ended"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ended, ["revoked", "revoked", "revoked"]);
    app.stop().await;
}
