//! Every app-level error is JSON with a stable code (issue 13, finding 6):
//! bodies too large, of the wrong type or shape, undecodable paths, and the
//! web logout's body limit.

use crate::helpers::{HOTFIX, PW, spawn_team_app};
use crate::helpers::{Response, http_send};

fn assert_json_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "not JSON: {:?} {}",
        r.header("content-type"),
        r.body
    );
    assert_eq!(r.json()["code"], code, "{}", r.body);
}

async fn send(
    app: &crate::helpers::TestApp,
    token: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    http_send(app.address, "POST", path, &headers, body).await
}

// issue 13: the approve handler read raw bytes, so its 413 was axum's plain text.
#[tokio::test]
async fn an_oversized_approve_body_is_a_json_413() {
    let app = spawn_team_app().await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let id = app.submit(&alice, HOTFIX).await;
    let big = format!("{{\"hosts\":[\"{}\"]}}", "a".repeat(100 * 1024));
    let path = format!("/api/v1/requests/{id}/approve");
    let r = send(&app, &bob, &path, Some("application/json"), &big).await;
    assert_json_error(&r, 413, "payload_too_large");
    app.stop().await;
}

// issue 13: approve ignored Content-Type.
#[tokio::test]
async fn an_approve_body_that_is_not_json_is_a_415() {
    let app = spawn_team_app().await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let id = app.submit(&alice, HOTFIX).await;
    let path = format!("/api/v1/requests/{id}/approve");
    let r = send(&app, &bob, &path, Some("text/plain"), "{}").await;
    assert_json_error(&r, 415, "unsupported_media_type");
    let r = send(&app, &bob, &path, None, "{}").await;
    assert_json_error(&r, 415, "unsupported_media_type");
    // An empty body is still an approval without narrowing.
    let r = send(&app, &bob, &path, None, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

// issue 13: `[]` was accepted as `{}` on approve and deny.
#[tokio::test]
async fn approve_and_deny_refuse_an_array_body() {
    let app = spawn_team_app().await;
    let (alice, bob) = (app.login("alice").await, app.login("bob").await);
    let id = app.submit(&alice, HOTFIX).await;
    for action in ["approve", "deny"] {
        let path = format!("/api/v1/requests/{id}/{action}");
        let r = send(&app, &bob, &path, Some("application/json"), "[]").await;
        assert_json_error(&r, 400, "invalid_body");
    }
    let r = app.get_as(&alice, &format!("/api/v1/requests/{id}")).await;
    assert_eq!(
        r.json()["state"],
        "pending",
        "an array body decided the request"
    );
    app.stop().await;
}

// issue 13: `GET /api/v1/requests/%FF` answered `400 text/plain "Invalid URL…"`.
#[tokio::test]
async fn an_undecodable_path_is_a_json_400() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    for path in [
        "/api/v1/requests/%FF",
        "/api/v1/requests/%FF/wait",
        "/requests/%FF",
    ] {
        let r = app.get_as(&alice, path).await;
        assert_json_error(&r, 400, "invalid_path");
    }
    app.stop().await;
}

// issue 13: a malformed query string is a JSON 400 with its own code.
#[tokio::test]
async fn a_malformed_query_is_a_json_400() {
    let app = spawn_team_app().await;
    let alice = app.login("alice").await;
    let r = app
        .get_as(&alice, "/api/v1/requests/req_x/wait?timeout=soon")
        .await;
    assert_json_error(&r, 400, "invalid_query");
    app.stop().await;
}

// issue 13: `/logout` accepted form bodies up to axum's default 2 MB.
#[tokio::test]
async fn logout_refuses_a_large_body() {
    let app = spawn_team_app().await;
    let login = format!("username=alice&password={}", PW.replace(' ', "+"));
    let r = http_send(
        app.address,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &login,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = format!("csrf_token={}", "a".repeat(1024 * 1024));
    let r = http_send(
        app.address,
        "POST",
        "/logout",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
        ],
        &body,
    )
    .await;
    assert_json_error(&r, 413, "payload_too_large");
    app.stop().await;
}
