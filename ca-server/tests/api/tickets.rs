//! Issue 17: ticket checks and comments against local Jira and ServiceNow
//! fakes answering with the vendors' documented JSON (Jira's issue with
//! `fields.status.statusCategory.key`, ServiceNow's Table API `result`).

use ca_server::store::sql::Sql as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_provider::{Answer, Fake, Seen, json};
use crate::fake_provider::{TOKEN, app, app_edited, pagerduty, provider, submit};
use crate::helpers::HOTFIX;
use crate::helpers::{TestApp, audit_rows};

/// A Jira issue as `GET /rest/api/2/issue/{key}` returns it.
pub(crate) fn issue(key: &str, project: &str, category: &str, assignee: &str) -> Value {
    json!({
        "id": "10009",
        "key": key,
        "self": format!("https://jira.example/rest/api/2/issue/10009"),
        "fields": {
            "status": {
                "name": if category == "done" { "Closed" } else { "In Progress" },
                "statusCategory": { "id": 4, "key": category, "name": "In Progress" }
            },
            "project": { "id": "10000", "key": project, "name": "Incidents" },
            "assignee": { "accountId": "5b10a", "emailAddress": assignee, "displayName": "A" },
            "reporter": { "accountId": "5b10b", "emailAddress": "carol@example.com", "displayName": "C" }
        }
    })
}

fn not_found() -> Answer {
    json(
        404,
        json!({ "errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {} }),
    )
}

/// Jira with one issue, INC-9, as `body`; comments answered 201.
pub(crate) fn jira(body: Value) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    move |s: &Seen| match (s.method.as_str(), s.path()) {
        ("GET", "/rest/api/2/issue/INC-9") => json(200, body.clone()),
        ("POST", "/rest/api/2/issue/INC-9/comment") => json(201, json!({ "id": "10100" })),
        _ => not_found(),
    }
}

const JIRA_RULE: &str = r#"ticket_check = { system = "jira", projects = ["INC"] }"#;

async fn refused(app: &TestApp, status: u16, code: &str) -> Value {
    let (got, body, _) = submit(app, "alice").await;
    assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    body
}

#[tokio::test]
async fn open_jira_issue_is_accepted_and_recorded() {
    // issue 17
    let j = Fake::start(jira(issue(
        "INC-9",
        "INC",
        "indeterminate",
        "x@example.com",
    )))
    .await;
    let app = app(&provider("jira", "jira", &j.url), JIRA_RULE, None).await;
    let (status, body, _) = submit(&app, "alice").await;
    assert_eq!(status, 201, "{body}");
    let check = &body["request"]["checks"][0];
    assert_eq!(
        (check["kind"].as_str(), check["outcome"].as_str()),
        (Some("ticket"), Some("open"))
    );
    assert!(check["answer_id"].as_str().unwrap().contains("key=INC-9"));
    let seen = j
        .wait_for("the issue", |s| s.path() == "/rest/api/2/issue/INC-9")
        .await;
    assert_eq!(
        seen.header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
}

#[tokio::test]
async fn closed_jira_issue_is_refused_and_audited() {
    // issue 17
    let j = Fake::start(jira(issue("INC-9", "INC", "done", "x@example.com"))).await;
    let app = app(&provider("jira", "jira", &j.url), JIRA_RULE, None).await;
    let body = refused(&app, 422, "ticket_refused").await;
    assert!(
        body["message"].as_str().unwrap().contains("must be open"),
        "{body}"
    );
    let rows = audit_rows(&app.data.open_plain());
    let denied = rows
        .iter()
        .find(|e| e.action == "request.submit" && e.outcome == "denied")
        .expect("a denied submission");
    assert!(
        denied.details.contains("ticket_refused"),
        "{}",
        denied.details
    );
    assert_eq!(crate::helpers::count(&app.data.open_plain(), "requests"), 0);
}

#[tokio::test]
async fn missing_jira_issue_is_refused() {
    // issue 17
    let j = Fake::start(|_: &Seen| not_found()).await;
    let app = app(&provider("jira", "jira", &j.url), JIRA_RULE, None).await;
    let body = refused(&app, 422, "ticket_refused").await;
    assert!(
        body["message"].as_str().unwrap().contains("no issue INC-9"),
        "{body}"
    );
}

#[tokio::test]
async fn jira_issue_of_another_project_is_refused() {
    // issue 17
    let j = Fake::start(jira(issue("INC-9", "OPS", "new", "x@example.com"))).await;
    let app = app(&provider("jira", "jira", &j.url), JIRA_RULE, None).await;
    let body = refused(&app, 422, "ticket_refused").await;
    assert!(
        body["message"].as_str().unwrap().contains("project OPS"),
        "{body}"
    );
}

#[tokio::test]
async fn jira_issue_must_be_the_requesters_when_configured() {
    // issue 17: "assignee or reporter is the requester", matched by verified email.
    let rule = r#"ticket_check = { system = "jira", requester = "assignee_or_reporter" }"#;
    let j = Fake::start(jira(issue("INC-9", "INC", "new", "bob@example.com"))).await;
    let app1 = app(
        &provider("jira", "jira", &j.url),
        rule,
        Some("alice@example.com"),
    )
    .await;
    let body = refused(&app1, 422, "ticket_refused").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("neither assigned"),
        "{body}"
    );
    let j = Fake::start(jira(issue("INC-9", "INC", "new", "ALICE@example.com"))).await;
    let app2 = app(
        &provider("jira", "jira", &j.url),
        rule,
        Some("alice@example.com"),
    )
    .await;
    let (status, body, _) = submit(&app2, "alice").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn jira_down_refuses_with_503_and_retry_after() {
    // issue 17: a ticket system that is down refuses the request, clearly.
    let j = Fake::start(|_: &Seen| json(502, json!({}))).await;
    let app = app(&provider("jira", "jira", &j.url), JIRA_RULE, None).await;
    let t = app.login("alice").await;
    let r = app.post_as(&t, "/api/v1/requests", HOTFIX).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["code"], "ticket_system_unavailable");
    assert!(
        r.json()["message"].as_str().unwrap().contains("HTTP 502"),
        "{}",
        r.body
    );
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn jira_down_with_allow_and_flag_goes_on_flagged() {
    // issue 17: `when_down = "allow_and_flag"`.
    let rule = r#"ticket_check = { system = "jira", when_down = "allow_and_flag" }"#;
    let j = Fake::start(|_: &Seen| {
        Answer::After(Duration::from_secs(8), Box::new(json(200, json!({}))))
    })
    .await;
    let app = app(&provider("jira", "jira", &j.url), rule, None).await;
    let (status, body, _) = submit(&app, "alice").await;
    assert_eq!(status, 201, "{body}");
    let check = &body["request"]["checks"][0];
    assert_eq!(check["outcome"], "flagged", "{body}");
    assert!(
        check["summary"]
            .as_str()
            .unwrap()
            .contains("did not answer within 3 s")
    );
    assert_eq!(body["request"]["state"], "pending");
}

#[tokio::test]
async fn ticket_keys_with_path_characters_never_reach_the_url() {
    // issue 17 (bad input): `../`, `?`, `#`, spaces are refused before any
    // request; none reaches the ticket system.
    let j = Fake::start(|_: &Seen| not_found()).await;
    // A pattern that lets anything through, so that only the Jira key rule stands.
    let app = app_edited(&provider("jira", "jira", &j.url), JIRA_RULE, None, |t| {
        t.replace("ticket_pattern = \"INC-[0-9]+\"", "ticket_pattern = \".+\"")
    })
    .await;
    let t = app.login("alice").await;
    for ticket in [
        "../../secure/admin",
        "INC-9/../../x",
        "INC-9?fields=*all",
        "INC-9#x",
        "INC 9",
        "INC-9%2F..",
    ] {
        let body = json!({ "role": "hotfix-admin", "hosts": ["web-1"], "duration": "1h", "reason": "r", "ticket": ticket }).to_string();
        let r = app.post_as(&t, "/api/v1/requests", &body).await;
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
                .contains("not a Jira issue key"),
            "{}",
            r.body
        );
    }
    assert!(
        j.seen().is_empty(),
        "the ticket system was asked: {:#?}",
        j.seen()
    );
}

#[tokio::test]
async fn comment_posted_on_approval_and_on_end_with_the_right_body() {
    // issue 17: on approval (here: on call) and when access ends, through the
    // outbox with retries (the first comment is refused with 503, then retried).
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen_attempts = attempts.clone();
    let pd = Fake::start(pagerduty(true)).await;
    let j = Fake::start(move |s: &Seen| {
        if s.method == "POST"
            && seen_attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            return json(503, json!({}));
        }
        jira(issue("INC-9", "INC", "indeterminate", "x@example.com"))(s)
    })
    .await;
    let providers = format!(
        "{}\n{}",
        provider("pagerduty", "pd", &pd.url),
        provider("jira", "jira", &j.url)
    );
    let rules = r#"on_call = { provider = "pd", schedule = "PSCHED1", max_duration = "2h" }
ticket_check = { system = "jira", projects = ["INC"], comment = true }"#;
    let app = app(&providers, rules, Some("alice@example.com")).await;
    let (status, body, _) = submit(&app, "alice").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["request"]["state"], "approved", "{body}");
    let id = body["request"]["id"].as_str().unwrap().to_owned();
    let comment = j
        .wait_for("an approval comment", |s| {
            s.method == "POST"
                && s.path() == "/rest/api/2/issue/INC-9/comment"
                && s.body.contains("granted")
        })
        .await;
    let text: Value = serde_json::from_str(&comment.body).unwrap();
    let text = text["body"].as_str().unwrap();
    for part in [
        "alice",
        "hotfix-admin",
        "web-1",
        "until 20",
        "on-call approval",
        &id,
    ] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    // The first attempt was answered 503: the outbox retries it (backoff 1 s).
    let mut retried = 0;
    for _ in 0..300 {
        retried = j
            .seen()
            .iter()
            .filter(|s| s.method == "POST" && s.body.contains("granted"))
            .count();
        if retried >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(retried, 2, "the 503 was retried once: {:#?}", j.seen());
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);

    let alice = app.login("alice").await;
    let r = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/cancel"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ended = j
        .wait_for("an end comment", |s| {
            s.method == "POST" && s.body.contains("ended at")
        })
        .await;
    assert!(ended.body.contains("cancelled"), "{}", ended.body);
}

#[tokio::test]
async fn a_rate_limited_comment_waits_for_the_retry_after() {
    // issue 17: Jira answers the comment 429 with Retry-After: 120; the
    // comment sender honours it (its next attempt is two minutes away, not
    // after the 1 s backoff), so it does not hammer a rate-limited system.
    let pd = Fake::start(pagerduty(true)).await;
    let j = Fake::start(|s: &Seen| {
        if s.method == "POST" {
            return Answer::Body(
                429,
                vec![("retry-after".into(), "120".into())],
                json!({ "errorMessages": ["Rate limit exceeded."] }).to_string(),
            );
        }
        jira(issue("INC-9", "INC", "indeterminate", "x@example.com"))(s)
    })
    .await;
    let providers = format!(
        "{}\n{}",
        provider("pagerduty", "pd", &pd.url),
        provider("jira", "jira", &j.url)
    );
    let rules = r#"on_call = { provider = "pd", schedule = "PSCHED1", max_duration = "2h" }
ticket_check = { system = "jira", projects = ["INC"], comment = true }"#;
    let app = app(&providers, rules, Some("alice@example.com")).await;
    let (status, body, _) = submit(&app, "alice").await;
    assert_eq!(
        (status, body["request"]["state"].as_str()),
        (201, Some("approved")),
        "{body}"
    );
    j.wait_for("a comment attempt", |s| s.method == "POST")
        .await;
    let mut next_attempt: Option<String> = None;
    for _ in 0..100 {
        next_attempt = app.data.open_store().one(
            "SELECT next_attempt_at FROM outbox_cursors WHERE sink = 'ticket:jira'",
            &[],
        );
        if next_attempt.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = chrono::DateTime::parse_from_rfc3339(&next_attempt.expect("the failure was recorded"))
        .unwrap();
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        wait > chrono::TimeDelta::seconds(100) && wait <= chrono::TimeDelta::seconds(120),
        "the next attempt is the Retry-After away: {wait}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let posts = j.seen().iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 1, "no retry before the Retry-After");
}

/// An on-call app whose Jira answers every comment with `status`; returns
/// the app and the fake once the first comment attempt arrived.
async fn comment_answered(status: u16) -> (TestApp, Fake, Fake) {
    let pd = Fake::start(pagerduty(true)).await;
    let j = Fake::start(move |s: &Seen| {
        if s.method == "POST" {
            return json(status, json!({ "errorMessages": ["no"], "errors": {} }));
        }
        jira(issue("INC-9", "INC", "indeterminate", "x@example.com"))(s)
    })
    .await;
    let providers = format!(
        "{}\n{}",
        provider("pagerduty", "pd", &pd.url),
        provider("jira", "jira", &j.url)
    );
    let rules = r#"on_call = { provider = "pd", schedule = "PSCHED1", max_duration = "2h" }
ticket_check = { system = "jira", projects = ["INC"], comment = true }"#;
    let app = app(&providers, rules, Some("alice@example.com")).await;
    let (status, body, _) = submit(&app, "alice").await;
    assert_eq!(
        (status, body["request"]["state"].as_str()),
        (201, Some("approved")),
        "{body}"
    );
    j.wait_for("a comment attempt", |s| s.method == "POST")
        .await;
    (app, j, pd)
}

/// `ticket:jira`'s (attempts, next_attempt_at, skipped audit events) once
/// the first attempt's outcome is recorded (at most 30 s).
async fn comment_outcome(app: &TestApp) -> (i64, Option<String>, usize) {
    let mut outcome = (0, None, 0);
    for _ in 0..300 {
        let conn = app.data.open_store();
        let (attempts, next) = conn
            .query_one(
                "SELECT attempts, next_attempt_at FROM outbox_cursors WHERE sink = 'ticket:jira'",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let skipped = audit_rows(&conn)
            .iter()
            .filter(|r| r.action == "delivery.skipped" && r.object == "sink:ticket:jira")
            .count();
        outcome = (attempts, next, skipped);
        if attempts > 0 || skipped > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outcome
}

#[tokio::test]
async fn a_comment_jira_refuses_is_skipped_and_audited() {
    // issue 17: Jira answers the comment 400 (it will never take it): the
    // comment is skipped with an audit event instead of holding up every
    // later comment forever.
    let (app, _j, _pd) = comment_answered(400).await;
    let (attempts, next, skipped) = comment_outcome(&app).await;
    assert_eq!((attempts, next, skipped), (0, None, 1));
}

#[tokio::test]
async fn refused_credentials_keep_the_comment_at_the_longest_backoff() {
    // issue 17: Jira refuses TPA's credentials (401): no comment is lost
    // (an operator fixes the token), but it is not retried every second.
    let (app, j, _pd) = comment_answered(401).await;
    let (attempts, next, skipped) = comment_outcome(&app).await;
    assert_eq!((attempts, skipped), (1, 0));
    let at = chrono::DateTime::parse_from_rfc3339(&next.unwrap()).unwrap();
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(wait > chrono::TimeDelta::seconds(250), "{wait}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(j.seen().iter().filter(|s| s.method == "POST").count(), 1);
}

#[tokio::test]
async fn servicenow_open_incident_passes_and_closed_is_refused() {
    // issue 17: the Table API's `result` array, by number, allowed states.
    let state = std::sync::Arc::new(std::sync::Mutex::new("2"));
    let current = state.clone();
    let snow = Fake::start(move |s: &Seen| match (s.method.as_str(), s.path()) {
        ("GET", "/api/now/table/incident") if s.query().contains("number=INC0010001") => json(
            200,
            json!({ "result": [{ "sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010001", "state": *current.lock().unwrap() }] }),
        ),
        ("GET", _) => json(200, json!({ "result": [] })),
        ("PATCH", "/api/now/table/incident/9d385017c611228701d22104cc95c371") => {
            json(200, json!({ "result": { "number": "INC0010001" } }))
        }
        _ => json(404, json!({ "error": { "message": "No Record found" }, "status": "failure" })),
    })
    .await;
    let rule = r#"ticket_check = { system = "snow", comment = true }"#;
    let app = app_edited(
        &provider("servicenow", "snow", &snow.url),
        rule,
        None,
        |t| {
            t.replace(
                "ticket_pattern = \"INC-[0-9]+\"",
                "ticket_pattern = \"INC[0-9]+\"",
            )
        },
    )
    .await;
    let t = app.login("alice").await;
    let body = |ticket: &str| {
        json!({ "role": "hotfix-admin", "hosts": ["web-1"], "duration": "1h", "reason": "r", "ticket": ticket }).to_string()
    };
    let r = app
        .post_as(&t, "/api/v1/requests", &body("INC0010001"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["request"]["checks"][0]["outcome"], "open");
    // Approved by the stages: the work note goes to the record by its sys_id.
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let (bob, carol) = (app.login("bob").await, app.login("carol").await);
    app.post_as(&bob, &format!("/api/v1/requests/{id}/approve"), "")
        .await;
    let done = app
        .post_as(&carol, &format!("/api/v1/requests/{id}/approve"), "")
        .await;
    assert_eq!(done.json()["state"], "approved", "{}", done.body);
    let note = snow.wait_for("a work note", |s| s.method == "PATCH").await;
    let note: Value = serde_json::from_str(&note.body).unwrap();
    let note = note["work_notes"].as_str().unwrap();
    for part in ["alice", "hotfix-admin", "web-1", "stages approval", &id] {
        assert!(note.contains(part), "{part:?} missing from {note:?}");
    }
    let r = app
        .post_as(&t, "/api/v1/requests", &body("INC0010002"))
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (422, Some("ticket_refused")),
        "{}",
        r.body
    );
    *state.lock().unwrap() = "7";
    let r = app.post_as(&t, "/api/v1/requests", &json!({ "role": "hotfix-admin", "hosts": ["web-2"], "duration": "1h", "reason": "r", "ticket": "INC0010001" }).to_string()).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (422, Some("ticket_refused")),
        "{}",
        r.body
    );
    assert!(
        r.json()["message"].as_str().unwrap().contains("state 7"),
        "{}",
        r.body
    );
    let asked = snow
        .wait_for("a table query", |s| s.path() == "/api/now/table/incident")
        .await;
    assert!(
        asked.query().contains("sysparm_query=number=INC0010001"),
        "{}",
        asked.query()
    );
}
