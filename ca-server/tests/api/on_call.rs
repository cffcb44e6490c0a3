//! Issue 17: on-call auto-approval against local PagerDuty and Opsgenie
//! fakes answering with the vendors' documented JSON. On call → approved at
//! once and audited; anything else (not on call, down, slow, rate-limited,
//! nonsense, huge, endless pages, no verified email) → the normal stages,
//! with the reason on the request.

use std::time::{Duration, Instant};

use ca_server::config::EXAMPLE_ROLES;
use serde_json::{Value, json};

use crate::fake_provider::{Answer, Fake, Seen, json};
use crate::helpers::{
    TestApp, audit_rows, ed25519_public_key, http_send, spawn_app_with, write_private,
};
use crate::requests_http::{HOTFIX, PW, get, post, token};

pub(crate) const TOKEN: &str = "provider-secret-token-1234";

/// The example roles with `role_keys` added to hotfix-admin.
pub(crate) fn hotfix_with(role_keys: &str) -> String {
    let last = "break_glass = { max_duration = \"30m\" }";
    assert!(EXAMPLE_ROLES.contains(last));
    EXAMPLE_ROLES.replace(last, &format!("{last}\n{role_keys}"))
}

/// A CA whose hotfix-admin has `role_keys`, with the `providers` tables,
/// alice (with `alice_email` on her account), bob and carol.
pub(crate) async fn app(providers: &str, role_keys: &str, alice_email: Option<&str>) -> TestApp {
    app_edited(providers, role_keys, alice_email, |t| t).await
}

/// Like [`app`], with the roles' text changed by `edit`.
pub(crate) async fn app_edited(
    providers: &str,
    role_keys: &str,
    alice_email: Option<&str>,
    edit: impl FnOnce(String) -> String,
) -> TestApp {
    let (providers, role_keys) = (providers.to_owned(), role_keys.to_owned());
    let alice_email = alice_email.map(str::to_owned);
    spawn_app_with(move |data| {
        write_private(&data.dir.join("provider.token"), TOKEN.as_bytes());
        let roles = edit(hotfix_with(&role_keys));
        data.edit_config(|t| format!("{t}{roles}\n{providers}\n"));
        data.add_account("alice", PW, &["engineers"]);
        if let Some(email) = alice_email {
            data.edit_config(|t| format!("{t}email = \"{email}\"\n"));
        }
        data.add_account("bob", PW, &["sre-leads"]);
        data.add_account("carol", PW, &["managers"]);
    })
    .await
}

pub(crate) fn provider(kind: &str, name: &str, url: &str) -> String {
    let table = match kind {
        "pagerduty" | "opsgenie" => "on_call",
        _ => "ticket_systems",
    };
    format!(
        "[[{table}]]\nname = \"{name}\"\nprovider = \"{kind}\"\nurl = \"{url}\"\ntoken_file = \"provider.token\"\n"
    )
}

const PD_RULE: &str = r#"on_call = { provider = "pd", schedule = "PSCHED1", max_duration = "2h" }"#;

fn page(key: &str, items: Value, more: bool) -> Answer {
    let mut body = json!({ "limit": 25, "offset": 0, "more": more, "total": null });
    body[key] = items;
    json(200, body)
}

/// PagerDuty as its REST API v2 reference documents `/users` and
/// `/oncalls`: alice is user PALICE; `on_call` says whether she is on call
/// in PSCHED1 now.
pub(crate) fn pagerduty(on_call: bool) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    move |s: &Seen| match s.path() {
        "/users" => page(
            "users",
            json!([
                { "id": "PALICE", "type": "user", "name": "Alice", "email": "Alice@Example.com" },
                { "id": "PEVIL", "type": "user", "name": "Eve", "email": "alice@example.com.evil.test" }
            ]),
            false,
        ),
        "/oncalls" if on_call => page(
            "oncalls",
            json!([{
                "escalation_policy": { "id": "PEP1", "type": "escalation_policy_reference" },
                "escalation_level": 1,
                "schedule": { "id": "PSCHED1", "type": "schedule_reference" },
                "user": { "id": "PALICE", "type": "user_reference", "summary": "Alice" },
                "start": "2026-12-07T00:00:00Z",
                "end": "2026-12-08T00:00:00Z"
            }]),
            false,
        ),
        "/oncalls" => page("oncalls", json!([]), false),
        _ => json(
            404,
            json!({ "error": { "message": "Not Found", "code": 2100 } }),
        ),
    }
}

/// The web page at `path` as `user` sees it (logged in with the form).
pub(crate) async fn page_as(app: &TestApp, user: &str, path: &str) -> String {
    let body = format!("username={user}&password={}", PW.replace(' ', "+"));
    let r = http_send(
        app.address,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "null"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &body,
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
    let page = http_send(app.address, "GET", path, &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

pub(crate) async fn submit(app: &TestApp, who: &str) -> (u16, Value, Duration) {
    let t = token(app, who).await;
    let started = Instant::now();
    let r = post(app, &t, "/api/v1/requests", HOTFIX).await;
    let took = started.elapsed();
    (r.status, r.json(), took)
}

/// Submits as alice and checks the request fell back to the stages with a
/// visible reason `outcome` (API view and request page).
async fn falls_back(app: &TestApp, outcome: &str) -> Value {
    let (status, body, _) = submit(app, "alice").await;
    assert_eq!(status, 201, "{body}");
    let r = &body["request"];
    assert_eq!(r["state"], "pending", "{body}");
    assert_eq!(r["approval_path"], "stages");
    assert!(r.get("on_call_approval").is_none(), "{body}");
    let check = &r["checks"][0];
    assert_eq!(check["kind"], "on_call", "{body}");
    assert_eq!(check["outcome"], outcome, "{body}");
    assert!(
        check["summary"]
            .as_str()
            .unwrap()
            .contains("waits for its approval stages"),
        "{body}"
    );
    // The same reason on GET and on the request page.
    let id = r["id"].as_str().unwrap();
    let alice = token(app, "alice").await;
    let again = get(app, &alice, &format!("/api/v1/requests/{id}"))
        .await
        .json();
    assert_eq!(again["checks"], r["checks"]);
    body
}

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
    let alice = token(&app, "alice").await;
    let key = json!({ "public_key": ed25519_public_key() }).to_string();
    let cert = post(
        &app,
        &alice,
        &format!("/api/v1/requests/{id}/certificate"),
        &key,
    )
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
    let (bob, carol) = (token(&app, "bob").await, token(&app, "carol").await);
    post(&app, &bob, &format!("/api/v1/requests/{id}/approve"), "").await;
    let done = post(&app, &carol, &format!("/api/v1/requests/{id}/approve"), "").await;
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
async fn answer_that_is_not_json_is_named_and_never_approves() {
    // issue 17 (bad input): not JSON.
    let pd =
        Fake::start(|_: &Seen| Answer::Body(200, Vec::new(), "<html>oops</html>".into())).await;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        PD_RULE,
        Some("alice@example.com"),
    )
    .await;
    let body = falls_back(&app, "bad_answer").await;
    let summary = body["request"]["checks"][0]["summary"].as_str().unwrap();
    assert!(summary.contains("not JSON"), "{summary}");
    assert!(
        !summary.contains("oops"),
        "the answer's content is not echoed: {summary}"
    );
}

#[tokio::test]
async fn ten_megabyte_answer_is_refused_unread() {
    // issue 17 (bad input): a 10 MB answer (chunked, no length) is refused
    // once 1 MiB arrived, not buffered whole.
    let pd = Fake::start(|_: &Seen| Answer::Endless(160)).await;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        PD_RULE,
        Some("alice@example.com"),
    )
    .await;
    falls_back(&app, "answer_too_large").await;
}

#[tokio::test]
async fn endless_pagination_is_bounded() {
    // issue 17 (bad input): "more": true forever stops after 10 pages.
    let pd = Fake::start(|s: &Seen| match s.path() {
        "/users" => page(
            "users",
            json!([{ "id": "PX", "email": "someone@example.com" }]),
            true,
        ),
        _ => page("oncalls", json!([]), true),
    })
    .await;
    let app = app(
        &provider("pagerduty", "pd", &pd.url),
        PD_RULE,
        Some("alice@example.com"),
    )
    .await;
    falls_back(&app, "too_many_pages").await;
    let asked = pd.seen().len();
    assert_eq!(asked, 10, "asked {asked} pages");
}

#[tokio::test]
async fn requester_without_verified_email_is_never_matched() {
    // issue 17 (bad input): PagerDuty has a user with alice's address, but
    // alice's identity vouches for no email: the provider is not even asked.
    let pd = Fake::start(pagerduty(true)).await;
    let app = app(&provider("pagerduty", "pd", &pd.url), PD_RULE, None).await;
    falls_back(&app, "no_verified_email").await;
    assert!(pd.seen().is_empty(), "asked: {:?}", pd.seen());
}

#[tokio::test]
async fn unverified_oidc_email_forgets_an_earlier_verified_one() {
    // issue 17 (bad input): the latest login decides; one with
    // `email_verified: false` leaves the identity with no email to match by.
    use ca_server::integrations::emails::{record_login, verified_claim};
    let app = app("", "", None).await;
    let mut conn = app.data.open_store();
    let who = tpa_core::Identity::new("https://idp.example", "sub-alice").unwrap();
    let verified = verified_claim(Some("alice@example.com"), Some(&json!(true)));
    record_login(&mut conn, &who, verified.as_ref(), chrono::Utc::now()).unwrap();
    let found = ca_server::store::integrations::verified_email(&conn, &who).unwrap();
    assert_eq!(
        found.map(|e| e.to_string()).as_deref(),
        Some("alice@example.com")
    );
    let unverified = verified_claim(Some("alice@example.com"), Some(&json!(false)));
    record_login(&mut conn, &who, unverified.as_ref(), chrono::Utc::now()).unwrap();
    assert_eq!(
        ca_server::store::integrations::verified_email(&conn, &who).unwrap(),
        None
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
    assert!(err.contains("1 provider check(s) failed"), "{err}");
}

#[tokio::test]
async fn oidc_user_with_the_email_but_unverified_is_never_auto_approved() {
    // issue 17 (bad input): with the real npm oidc-provider, alice's login
    // says `email_verified: true`; mallory's carries the same address with
    // `email_verified: false`. PagerDuty has a user with that address on
    // call: only alice is approved at once.
    use crate::oidc::{Browser, Provider, add_connector, callback_uri, csrf, post_json};
    let listener = crate::oidc::reserve().await;
    let address = listener.local_addr().unwrap();
    let mut users = crate::oidc::users();
    users["alice"]["email"] = json!("alice@example.com");
    users["alice"]["email_verified"] = json!(true);
    users["alice"]["groups"] = json!(["engineers"]);
    users["mallory"] = json!({
        "sub": "mallory-sub-2", "preferred_username": "mallory", "name": "Mallory",
        "email": "alice@example.com", "email_verified": false, "groups": ["engineers"]
    });
    let idp = Provider::start(&callback_uri(address), users, json!({}));
    let pd = Fake::start(pagerduty(true)).await;
    let issuer = idp.issuer();
    let providers = provider("pagerduty", "pd", &pd.url);
    let app = crate::helpers::spawn_app_bound(listener, move |data, address| {
        crate::oidc::set_public_url(data, address);
        add_connector(data, "idp", &issuer);
        write_private(&data.dir.join("provider.token"), TOKEN.as_bytes());
        data.edit_config(|t| format!("{t}{}\n{providers}\n", hotfix_with(PD_RULE)));
    })
    .await;
    let mut outcomes = Vec::new();
    for who in ["mallory", "alice"] {
        let mut browser = Browser::default();
        let done = browser.web_login(&app, "idp", who, "/my").await;
        assert_eq!(done.status, 200, "{}", done.body);
        let token = csrf(&mut browser, &app).await;
        let r = post_json(&browser, &app, "/api/v1/requests", &token, HOTFIX).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let request = r.json()["request"].clone();
        outcomes.push((
            who,
            request["state"].as_str().unwrap().to_owned(),
            request["checks"][0]["outcome"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        outcomes,
        [
            (
                "mallory",
                "pending".to_owned(),
                "no_verified_email".to_owned()
            ),
            ("alice", "approved".to_owned(), "on_call".to_owned()),
        ]
    );
    // PagerDuty was asked for alice only.
    let asked = pd.seen().iter().filter(|s| s.path() == "/users").count();
    assert_eq!(asked, 1, "{:#?}", pd.seen());
}

#[tokio::test]
async fn slow_pages_are_bounded_by_one_deadline() {
    // issue 17: ten pages of 1 s each would take 10 s; the question as a
    // whole gets 3 s, then the request goes to its stages.
    let pd = Fake::start(|_: &Seen| {
        Answer::After(
            Duration::from_secs(1),
            Box::new(page(
                "users",
                json!([{ "id": "PX", "email": "someone@example.com" }]),
                true,
            )),
        )
    })
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
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(pd.seen().len() <= 4, "asked {} pages", pd.seen().len());
}
