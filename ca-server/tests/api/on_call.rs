//! Issue 17: on-call auto-approval against local PagerDuty and Opsgenie
//! fakes answering with the vendors' documented JSON. On call → approved at
//! once and audited; not on call, down, slow or rate-limited → the normal
//! stages, with the reason on the request. The bad answers are in
//! `on_call_bad_input`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_provider::{
    Answer, Fake, PD_RULE, Seen, TOKEN, app, falls_back, hotfix_with, json, page, page_as,
    pagerduty, provider, submit,
};
use crate::helpers::{audit_rows, ed25519_public_key, write_private};

#[tokio::test]
async fn on_call_requester_is_approved_at_once_and_audited() {
    // issue 17
    let pd = Fake::start(pagerduty(true)).await;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        PD_RULE,
        Some("alice@example.com"),
    )
    .await;
    let (status, body, _) = submit(&app, "alice").await;
    assert_eq!(status, 201, "{body}");
    let r = &body["request"];
    assert_eq!(r["state"], "approved", "{body}");
    assert_eq!(r["approval_path"], "on_call");
    assert_eq!(r["active"], true);
    let approval = &r["on_call_approval"];
    assert_eq!(approval["source"], "pagerduty:pd:PSCHED1");
    assert!(
        approval["answer_id"]
            .as_str()
            .unwrap()
            .contains("user=PALICE"),
        "{body}"
    );
    assert_eq!(r["checks"][0]["outcome"], "on_call");

    // The fake was asked by schedule and user, with the token.
    let oncalls = pd
        .wait_for("GET /oncalls", |s| s.path() == "/oncalls")
        .await;
    let query = oncalls.query();
    assert!(query.contains("schedule_ids[]=PSCHED1"), "{query}");
    assert!(query.contains("user_ids[]=PALICE"), "{query}");
    assert!(
        !query.contains("PEVIL"),
        "only the exact email counts: {query}"
    );
    assert_eq!(
        oncalls.header("authorization"),
        Some(&*format!("Token token={TOKEN}"))
    );
    let users = pd.wait_for("GET /users", |s| s.path() == "/users").await;
    assert!(
        users.query().contains("query=alice@example.com"),
        "{}",
        users.query()
    );

    // Audited: the system approved on PagerDuty's word, bound to the content hash.
    let rows = audit_rows(&app.data.open_plain());
    let approve = rows
        .iter()
        .find(|e| e.action == "request.approve")
        .expect("an approval event");
    assert_eq!(approve.actor, "system");
    assert!(
        approve.reason.contains("on call now in schedule PSCHED1"),
        "{}",
        approve.reason
    );
    let details: Value = serde_json::from_str(&approve.details).unwrap();
    assert_eq!(details["on_call"]["schedule"], "PSCHED1");
    assert_eq!(details["on_call"]["provider"], "pd");
    assert_eq!(
        details["on_call"]["approved_content_hash"],
        details["content_hash"]
    );
    assert!(
        rows.iter().all(|e| !e.details.contains(TOKEN)),
        "the token is never audited"
    );

    // The approval is a decision against the snapshot: a certificate follows.
    let id = r["id"].as_str().unwrap();
    let alice = app.login("alice").await;
    let key = json!({ "public_key": ed25519_public_key() }).to_string();
    let cert = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(cert.status, 200, "{}", cert.body);
    assert_eq!(cert.json()["principals"], json!(["root"]));

    // The request page shows the decision.
    let page = page_as(&app, "alice", &format!("/requests/{id}")).await;
    assert!(page.contains("id=\"on-call-approval\""), "{page}");
    assert!(page.contains("user=PALICE"), "{page}");
}

#[tokio::test]
async fn not_on_call_goes_through_the_stages() {
    // issue 17
    let pd = Fake::start(pagerduty(false)).await;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        PD_RULE,
        Some("alice@example.com"),
    )
    .await;
    let body = falls_back(&app, "not_on_call").await;
    assert!(
        body["request"]["checks"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("PSCHED1")
    );
    // The request page says why it waits.
    let id = body["request"]["id"].as_str().unwrap();
    let page = page_as(&app, "alice", &format!("/requests/{id}")).await;
    assert!(
        page.contains("check-not_on_call")
            && page.contains("not on call now in PagerDuty schedule PSCHED1"),
        "{page}"
    );
    assert!(!page.contains("id=\"on-call-approval\""));
    // The stages still work as before.
    let id = body["request"]["id"].as_str().unwrap();
    let (bob, carol) = (app.login("bob").await, app.login("carol").await);
    app.post_as(&bob, &format!("/api/v1/requests/{id}/approve"), "")
        .await;
    let done = app
        .post_as(&carol, &format!("/api/v1/requests/{id}/approve"), "")
        .await;
    assert_eq!(done.json()["state"], "approved", "{}", done.body);
    assert_eq!(done.json()["approval_path"], "stages");
}

#[tokio::test]
async fn provider_error_never_approves() {
    // issue 17: a provider answering 500 → the stages, and why.
    let pd = Fake::start(|_: &Seen| json(500, json!({ "error": { "message": "boom" } }))).await;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        PD_RULE,
        Some("alice@example.com"),
    )
    .await;
    let body = falls_back(&app, "provider_error").await;
    assert!(
        body["request"]["checks"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );
}

#[tokio::test]
async fn slow_provider_times_out_after_3s_and_never_approves() {
    // issue 17: a provider slower than 3 s → the stages, and the submission is not held longer.
    let pd =
        Fake::start(|s: &Seen| Answer::After(Duration::from_secs(8), Box::new(pagerduty(true)(s))))
            .await;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        PD_RULE,
        Some("alice@example.com"),
    )
    .await;
    let started = Instant::now();
    falls_back(&app, "timeout").await;
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn rate_limited_provider_shows_retry_after() {
    // issue 17: 429 with Retry-After → no auto-approval, the reason says when.
    let pd = Fake::start(|_: &Seen| {
        Answer::Body(
            429,
            vec![("Retry-After".into(), "30".into())],
            json!({ "error": { "message": "Rate Limit Exceeded", "code": 2020 } }).to_string(),
        )
    })
    .await;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        PD_RULE,
        Some("alice@example.com"),
    )
    .await;
    let body = falls_back(&app, "rate_limited").await;
    let summary = body["request"]["checks"][0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("HTTP 429") && summary.contains("retry after 30 s"),
        "{summary}"
    );
}

#[tokio::test]
async fn opsgenie_on_call_approves() {
    // issue 17: Opsgenie's /v2/schedules/{id}/on-calls?flat=true.
    let og = Fake::start(|s: &Seen| match s.path() {
        "/v2/schedules/sched-1/on-calls" => json(
            200,
            json!({
                "data": {
                    "_parent": { "id": "sched-1", "name": "SRE", "enabled": true },
                    "onCallRecipients": ["alice@example.com"]
                },
                "took": 0.1,
                "requestId": "og-req-42"
            }),
        ),
        _ => json(
            404,
            json!({ "message": "not found", "took": 0.0, "requestId": "x" }),
        ),
    })
    .await;
    let rule = r#"on_call = { provider = "og", schedule = "sched-1", max_duration = "2h" }"#;
    let app = app(
        &provider("opsgenie", "og", &og.url),
        rule,
        Some("alice@example.com"),
    )
    .await;
    let (status, body, _) = submit(&app, "alice").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["request"]["state"], "approved", "{body}");
    assert!(
        body["request"]["on_call_approval"]["answer_id"]
            .as_str()
            .unwrap()
            .contains("og-req-42")
    );
    let seen = og
        .wait_for("on-calls", |s| s.path().ends_with("/on-calls"))
        .await;
    assert!(seen.query().contains("flat=true"));
    assert_eq!(
        seen.header("authorization"),
        Some(&*format!("GenieKey {TOKEN}"))
    );
}

#[tokio::test]
async fn on_call_with_incident_requirement() {
    // issue 17: "only with an open incident of that service".
    let pd = Fake::start(|s: &Seen| match s.path() {
        "/incidents/INC-9" => json(
            200,
            json!({ "incident": { "id": "INC-9", "status": "resolved", "service": { "id": "PSVC1" } } }),
        ),
        _ => pagerduty(true)(s),
    })
    .await;
    let rule = r#"on_call = { provider = "pd", schedule = "PSCHED1", max_duration = "2h", incident_service = "PSVC1" }"#;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        rule,
        Some("alice@example.com"),
    )
    .await;
    let body = falls_back(&app, "no_incident").await;
    assert!(
        body["request"]["checks"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("resolved")
    );
}

/// Runs `tpa-ca integrations test` over a configuration with `providers`
/// and hotfix-admin's `role_keys`.
async fn integrations_test(providers: &str, role_keys: &str) -> (i32, String, String) {
    let mut data = crate::helpers::DataDir::new();
    write_private(&data.dir.join("provider.token"), TOKEN.as_bytes());
    data.edit_config(|t| format!("{t}{}\n{providers}\n", hotfix_with(role_keys)));
    let config = data.config_path.clone();
    tokio::task::spawn_blocking(move || {
        crate::helpers::run(
            crate::helpers::tpa_ca()
                .args(["integrations", "test", "--config"])
                .arg(&config),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn integrations_test_command_asks_each_provider_once() {
    // issue 17: `tpa-ca integrations test --config F`.
    let pd = Fake::start(|s: &Seen| match s.path() {
        "/oncalls" => page(
            "oncalls",
            json!([{
                "escalation_policy": { "id": "PEP1" }, "escalation_level": 1,
                "schedule": { "id": "PSCHED1" },
                "user": { "id": "PALICE", "type": "user", "email": "alice@example.com" },
                "start": null, "end": null
            }]),
            false,
        ),
        _ => json(404, json!({})),
    })
    .await;
    let jira = Fake::start(|s: &Seen| match s.path() {
        "/rest/api/2/myself" => json(
            200,
            json!({ "accountId": "5b10", "emailAddress": "bot@example.com", "displayName": "TPA Bot" }),
        ),
        _ => json(404, json!({})),
    })
    .await;
    let providers = format!(
        "{}\n{}",
        provider("pagerduty", "pd", &pd.url),
        provider("jira", "jira", &jira.url)
    );
    let rules = format!("{PD_RULE}\nticket_check = {{ system = \"jira\" }}");
    let (code, out, err) = integrations_test(&providers, &rules).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("on_call pd (pagerduty")
            && out.contains("ok: schedule PSCHED1: 1 on call now: PALICE (alice@example.com)"),
        "{out}"
    );
    assert!(
        out.contains("ticket_systems jira (jira") && out.contains("ok: authenticated as TPA Bot"),
        "{out}"
    );
    assert_eq!(pd.seen().len(), 1, "one read-only call");
    assert_eq!(pd.seen()[0].method, "GET");
    assert!(
        !out.contains(TOKEN) && !err.contains(TOKEN),
        "the token is never printed"
    );

    // A provider that is down: named, and exit status 1.
    let down = Fake::start(|_: &Seen| json(503, json!({}))).await;
    let (code, out, err) =
        integrations_test(&provider("pagerduty", "pd", &down.url), PD_RULE).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAILED: schedule PSCHED1: the provider answered HTTP 503"),
        "{out}"
    );
    assert!(err.contains("1 integration check(s) failed"), "{err}");
}
