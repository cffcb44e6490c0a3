//! Issue 17: the closing ticket comment of a grant that simply runs out.
//! The window-end pass is driven at a chosen `now` after the window (an
//! injected clock; the requests last an hour of real time), on the running
//! CA's writer, and its outbox bell is rung so that the CA's own commenter
//! delivers to the local Jira and ServiceNow fakes.

use std::time::{Duration, Instant};

use ca_server::integrations::window_end::{self, queue_due};
use ca_server::store::window_ends;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use tpa_core::RequestId;

use crate::fake_provider::{Fake, Seen, app, app_edited, json, provider};
use crate::helpers::{HOTFIX, TestApp};
use crate::tickets::{issue, jira};

const COMMENTING: &str =
    r#"ticket_check = { system = "jira", projects = ["INC"], comment = true }"#;
const ENDED: &str = "when its approved window ran out";

fn hotfix_on(host: &str) -> String {
    json!({ "role": "hotfix-admin", "hosts": [host], "duration": "1h", "reason": "r", "ticket": "INC-9" })
        .to_string()
}

/// Alice's request `body`, approved by bob and carol: its id and window end.
async fn approved(app: &TestApp, body: &str) -> (String, DateTime<Utc>) {
    let alice = app.login("alice").await;
    let r = app.post_as(&alice, "/api/v1/requests", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let (bob, carol) = (app.login("bob").await, app.login("carol").await);
    let first = app.approve(&bob, &id).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let done = app.approve(&carol, &id).await;
    assert_eq!(done.json()["state"], "approved", "{}", done.body);
    let end = done.json()["window_end"].as_str().unwrap().to_owned();
    let end = DateTime::parse_from_rfc3339(&end)
        .unwrap()
        .with_timezone(&Utc);
    (id, end)
}

/// One window-end pass at `now`, on the running CA's writer (as its
/// background task runs it), then a ring of its outbox bell.
async fn end_pass(app: &TestApp, now: DateTime<Utc>) -> usize {
    let state = app.state().clone();
    let bell = state.bell.clone();
    let queued = tokio::task::spawn_blocking(move || {
        state
            .database
            .session(Instant::now() + Duration::from_secs(60), |conn| {
                queue_due(conn, state.integrations.config(), &state.config.policy, now)
            })
            .unwrap()
    })
    .await
    .unwrap();
    bell.ring();
    queued
}

/// Waits (bounded, ringing the CA's outbox bell so that an idle commenter
/// looks again) until the fake saw a request that `pred` accepts.
async fn delivered(app: &TestApp, fake: &Fake, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
    for _ in 0..600 {
        if let Some(s) = fake.seen().into_iter().find(|s| pred(s)) {
            return s;
        }
        app.state().bell.ring();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the fake never saw {what}; it saw {:#?}", fake.seen());
}

fn closing_comments(fake: &Fake) -> Vec<String> {
    fake.seen()
        .into_iter()
        .filter(|s| s.method != "GET" && s.body.contains(ENDED))
        .map(|s| s.body)
        .collect()
}

fn queued_items(app: &TestApp) -> i64 {
    app.data.open_plain().one(
        "SELECT count(*) FROM outbox WHERE kind = ?1",
        &[&window_end::KIND],
    )
}

fn notice(app: &TestApp, id: &str) -> Option<Option<i64>> {
    window_ends::notice(&app.data.open_plain(), &RequestId::parse(id).unwrap()).unwrap()
}

#[tokio::test]
async fn closing_comment_is_posted_once_when_the_window_runs_out() {
    // issue 17: access that simply runs out gets one closing comment (who,
    // role, hosts, the end in UTC, the link), exactly once.
    let j = Fake::start(jira(issue(
        "INC-9",
        "INC",
        "indeterminate",
        "x@example.com",
    )))
    .await;
    let app = app(&provider("jira", "jira", &j.url), COMMENTING, None).await;
    let (id, end) = approved(&app, HOTFIX).await;
    delivered(&app, &j, "the approval comment", |s| {
        s.body.contains("granted")
    })
    .await;

    assert_eq!(
        end_pass(&app, end - TimeDelta::seconds(1)).await,
        0,
        "not before the end"
    );
    assert_eq!(end_pass(&app, end + TimeDelta::seconds(1)).await, 1);
    let comment = delivered(&app, &j, "the closing comment", |s| s.body.contains(ENDED)).await;
    assert_eq!(comment.path(), "/rest/api/2/issue/INC-9/comment");
    let text: Value = serde_json::from_str(&comment.body).unwrap();
    let text = text["body"].as_str().unwrap();
    let at = end.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    for part in ["alice", "hotfix-admin", "web-1", &at, &id] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    assert!(
        !text.contains("revoked") && !text.contains("cancelled"),
        "{text}"
    );

    // A second pass, a later one, and another replica's pass (its own
    // connection) queue nothing more.
    assert_eq!(end_pass(&app, end + TimeDelta::seconds(2)).await, 0);
    assert_eq!(end_pass(&app, end + TimeDelta::hours(3)).await, 0);
    let other = app.state().clone();
    let mut conn = app.data.open_store();
    let replica = tokio::task::spawn_blocking(move || {
        queue_due(
            &mut conn,
            other.integrations.config(),
            &other.config.policy,
            end + TimeDelta::minutes(5),
        )
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(replica, 0);
    // The guard under a pass that raced past the lookup: the claim itself
    // is refused by the key, so nothing would be queued.
    let id_ = RequestId::parse(&id).unwrap();
    assert!(!window_ends::claim(&app.data.open_plain(), &id_, end).unwrap());
    assert_eq!(queued_items(&app), 1);
    assert!(
        matches!(notice(&app, &id), Some(Some(_))),
        "the notice names its outbox item"
    );

    // Delivery is in order: once a later comment arrived, a duplicate would have too.
    let (later, _) = approved(&app, &hotfix_on("web-2")).await;
    delivered(&app, &j, "the later approval comment", |s| {
        s.body.contains(&later)
    })
    .await;
    assert_eq!(closing_comments(&j).len(), 1, "{:#?}", j.seen());
}

#[tokio::test]
async fn servicenow_gets_a_closing_work_note_when_the_window_runs_out() {
    // issue 17: the same closing comment, as a ServiceNow work note.
    let snow = Fake::start(|s: &Seen| match (s.method.as_str(), s.path()) {
        ("GET", "/api/now/table/incident") if s.query().contains("number=INC0010001") => json(
            200,
            json!({ "result": [{ "sys_id": "9d385017c611228701d22104cc95c371", "number": "INC0010001", "state": "2" }] }),
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
    let body = json!({ "role": "hotfix-admin", "hosts": ["db-1"], "duration": "2h", "reason": "r", "ticket": "INC0010001" });
    let (id, end) = approved(&app, &body.to_string()).await;
    assert_eq!(end_pass(&app, end + TimeDelta::seconds(1)).await, 1);
    let note = delivered(&app, &snow, "the closing work note", |s| {
        s.method == "PATCH" && s.body.contains(ENDED)
    })
    .await;
    let note: Value = serde_json::from_str(&note.body).unwrap();
    let note = note["work_notes"].as_str().unwrap();
    let at = end.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    for part in ["alice", "hotfix-admin", "db-1", &at, &id] {
        assert!(note.contains(part), "{part:?} missing from {note:?}");
    }
}

#[tokio::test]
async fn access_revoked_or_cancelled_before_the_end_gets_only_its_own_comment() {
    // issue 17: a revoked or cancelled grant got its comment then; its
    // window's end adds nothing.
    let j = Fake::start(jira(issue(
        "INC-9",
        "INC",
        "indeterminate",
        "x@example.com",
    )))
    .await;
    let app = app(&provider("jira", "jira", &j.url), COMMENTING, None).await;
    let (revoked, end) = approved(&app, HOTFIX).await;
    let (cancelled, _) = approved(&app, &hotfix_on("web-2")).await;
    let bob = app.login("bob").await;
    let r = app
        .post_as(
            &bob,
            &format!("/api/v1/requests/{revoked}/revoke"),
            r#"{"comment":"incident closed"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let alice = app.login("alice").await;
    let r = app
        .post_as(&alice, &format!("/api/v1/requests/{cancelled}/cancel"), "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    delivered(&app, &j, "the revoke comment", |s| {
        s.body.contains("(revoked)")
    })
    .await;
    delivered(&app, &j, "the cancel comment", |s| {
        s.body.contains("(cancelled)")
    })
    .await;

    assert_eq!(end_pass(&app, end + TimeDelta::hours(2)).await, 0);
    assert_eq!(queued_items(&app), 0);
    assert_eq!(notice(&app, &revoked), None);
    assert_eq!(notice(&app, &cancelled), None);
    let (later, _) = approved(&app, &hotfix_on("db-1")).await;
    delivered(&app, &j, "the later approval comment", |s| {
        s.body.contains(&later)
    })
    .await;
    assert!(closing_comments(&j).is_empty(), "{:#?}", j.seen());
}

#[tokio::test]
async fn request_without_ticket_or_with_comments_off_gets_no_closing_comment() {
    // issue 17: no ticket, nothing to comment on, even when its role comments
    // (a rule added after it was granted); a role with `comment = false`
    // gets its end noticed once and nothing queued.
    let j = Fake::start(jira(issue(
        "INC-9",
        "INC",
        "indeterminate",
        "x@example.com",
    )))
    .await;
    let app = app(
        &provider("jira", "jira", &j.url),
        r#"ticket_check = { system = "jira", projects = ["INC"] }"#,
        None,
    )
    .await;
    let alice = app.login("alice").await;
    // read-only-debug is auto-approved for engineers and names no ticket.
    let r = app
        .post_as(
            &alice,
            "/api/v1/requests",
            r#"{"role":"read-only-debug","hosts":["web-1"],"duration":"1h","reason":"logs"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["request"]["state"], "approved", "{}", r.body);
    let untracked = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let (silent, end) = approved(&app, HOTFIX).await;

    let state = app.state().clone();
    let mut rules = state.integrations.config().clone();
    let mut commenting = rules.role_tickets.values().next().unwrap().clone();
    commenting.comment = true;
    rules.role_tickets.insert(
        tpa_core::RoleName::parse("read-only-debug").unwrap(),
        commenting,
    );
    let queued = tokio::task::spawn_blocking(move || {
        state
            .database
            .session(Instant::now() + Duration::from_secs(60), |conn| {
                queue_due(
                    conn,
                    &rules,
                    &state.config.policy,
                    end + TimeDelta::hours(1),
                )
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(queued, 0);
    assert_eq!(end_pass(&app, end + TimeDelta::hours(2)).await, 0);
    assert_eq!(queued_items(&app), 0);
    assert_eq!(notice(&app, &untracked), None, "no ticket: never noticed");
    assert_eq!(
        notice(&app, &silent),
        Some(None),
        "noticed once, nothing queued"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        j.seen().iter().all(|s| s.method == "GET"),
        "no comment at all: {:#?}",
        j.seen()
    );
}
