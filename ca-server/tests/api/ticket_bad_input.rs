//! Issue 17's bad input for the ticket systems and Opsgenie (the PagerDuty
//! cases are in `on_call_bad_input`): an answer that is not JSON, 10 MB, a
//! 429 with Retry-After, and ServiceNow numbers with path characters, each
//! against a local fake answering like the vendor.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::fake_provider::{Answer, Fake, Seen, app, app_edited, falls_back, json, provider};
use crate::helpers::{HOTFIX, TestApp};

const JIRA_RULE: &str = r#"ticket_check = { system = "jira", projects = ["INC"] }"#;

/// Alice's hotfix-admin submission: refused 503 `ticket_system_unavailable`
/// with a Retry-After; its message.
async fn unavailable(app: &TestApp) -> String {
    let alice = app.login("alice").await;
    let r = app.post_as(&alice, "/api/v1/requests", HOTFIX).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (503, Some("ticket_system_unavailable")),
        "{}",
        r.body
    );
    assert!(r.header("retry-after").is_some(), "{}", r.body);
    assert_eq!(crate::helpers::count(&app.data.open_plain(), "requests"), 0);
    r.json()["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn jira_answer_that_is_not_json_refuses_and_is_named() {
    // issue 17 (bad input): a 200 that is an HTML login page, not the issue.
    let j = Fake::start(|_: &Seen| {
        Answer::Body(
            200,
            Vec::new(),
            "<html><body>Log in to Jira SECRET-PAGE-TEXT</body></html>".into(),
        )
    })
    .await;
    let app = app(&provider("jira", "jira", &j.url), JIRA_RULE, None).await;
    let message = unavailable(&app).await;
    assert!(message.contains("not the JSON expected"), "{message}");
    assert!(
        !message.contains("SECRET-PAGE-TEXT"),
        "the answer is not echoed: {message}"
    );
}

#[tokio::test]
async fn jira_answer_of_10_mb_is_refused_unread() {
    // issue 17 (bad input): 160 chunks of 64 KiB without Content-Length.
    let j = Fake::start(|_: &Seen| Answer::Endless(160)).await;
    let app = app(&provider("jira", "jira", &j.url), JIRA_RULE, None).await;
    let started = Instant::now();
    let message = unavailable(&app).await;
    assert!(message.contains("larger than 1 MiB"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn jira_429_refuses_with_its_retry_after() {
    // issue 17: rate-limit 429 with Retry-After, as Jira Cloud sends it.
    let j = Fake::start(|_: &Seen| {
        Answer::Body(
            429,
            vec![("Retry-After".into(), "30".into())],
            json!({ "errorMessages": ["Rate limit exceeded."] }).to_string(),
        )
    })
    .await;
    let app = app(&provider("jira", "jira", &j.url), JIRA_RULE, None).await;
    let message = unavailable(&app).await;
    assert!(
        message.contains("HTTP 429") && message.contains("retry after 30 s"),
        "{message}"
    );
}

#[tokio::test]
async fn servicenow_answer_that_is_not_json_refuses() {
    // issue 17 (bad input), the Table API's side.
    let snow = Fake::start(|_: &Seen| Answer::Body(200, Vec::new(), "{\"result\": [".into())).await;
    let app = app_edited(
        &provider("servicenow", "snow", &snow.url),
        r#"ticket_check = { system = "snow" }"#,
        None,
        |t| {
            t.replace(
                "ticket_pattern = \"INC-[0-9]+\"",
                "ticket_pattern = \"INC[0-9]+\"",
            )
        },
    )
    .await;
    let alice = app.login("alice").await;
    let body = json!({ "role": "hotfix-admin", "hosts": ["web-1"], "duration": "1h", "reason": "r", "ticket": "INC0010001" });
    let r = app
        .post_as(&alice, "/api/v1/requests", &body.to_string())
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (503, Some("ticket_system_unavailable")),
        "{}",
        r.body
    );
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("not the JSON expected"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn servicenow_numbers_with_path_characters_never_reach_the_url() {
    // issue 17 (bad input): `../`, `?`, `#`, spaces are refused before any
    // request to ServiceNow (the role's pattern lets anything through here).
    let snow = Fake::start(|_: &Seen| json(200, json!({ "result": [] }))).await;
    let app = app_edited(
        &provider("servicenow", "snow", &snow.url),
        r#"ticket_check = { system = "snow" }"#,
        None,
        |t| t.replace("ticket_pattern = \"INC-[0-9]+\"", "ticket_pattern = \".+\""),
    )
    .await;
    let alice = app.login("alice").await;
    for ticket in [
        "../../api/now/table/sys_user",
        "INC0010001/../x",
        "INC0010001?sysparm_query=active=true",
        "INC0010001#x",
        "INC 0010001",
        "INC0010001%2F..",
        "INC0010001&sysparm_limit=1000",
    ] {
        let body = json!({ "role": "hotfix-admin", "hosts": ["web-1"], "duration": "1h", "reason": "r", "ticket": ticket });
        let r = app
            .post_as(&alice, "/api/v1/requests", &body.to_string())
            .await;
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (422, Some("ticket_refused")),
            "{ticket}: {}",
            r.body
        );
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("is not a ServiceNow number"),
            "{}",
            r.body
        );
    }
    assert!(
        snow.seen().is_empty(),
        "ServiceNow was asked: {:#?}",
        snow.seen()
    );
}

#[tokio::test]
async fn opsgenie_429_never_approves_and_shows_retry_after() {
    // issue 17: the other on-call provider rate-limiting, with Retry-After.
    let og = Fake::start(|_: &Seen| {
        Answer::Body(
            429,
            vec![("Retry-After".into(), "12".into())],
            json!({ "message": "You are making too many requests!", "took": 0.0, "requestId": "r" }).to_string(),
        )
    })
    .await;
    let rule = r#"on_call = { provider = "og", schedule = "sched-1", max_duration = "2h" }"#;
    let app = app(
        &provider("opsgenie", "og", &og.url),
        rule,
        Some("alice@example.com"),
    )
    .await;
    let body = falls_back(&app, "rate_limited").await;
    let summary = body["request"]["checks"][0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("HTTP 429") && summary.contains("retry after 12 s"),
        "{summary}"
    );
}
