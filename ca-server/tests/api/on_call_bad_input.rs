//! Issue 17, bad input to the on-call check: answers that are not JSON,
//! 10 MB, paginated forever or slow page by page, and people whose email
//! nobody verified (a local account without one, a real OpenID login with
//! `email_verified: false`). None of them ever approves.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::fake_provider::{
    Answer, Fake, PD_RULE, Seen, TOKEN, app, falls_back, hotfix_with, page, pagerduty, provider,
};
use crate::helpers::HOTFIX;
use crate::helpers::write_private;

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
    let conn = app.data.open_store();
    let who = tpa_core::Identity::new("https://idp.example", "sub-alice").unwrap();
    let verified = verified_claim(Some("alice@example.com"), Some(&json!(true)));
    app.data
        .blocking(|c| record_login(c, &who, verified.as_ref(), chrono::Utc::now()))
        .unwrap();
    let found = ca_server::store::integrations::verified_email(&conn, &who).unwrap();
    assert_eq!(
        found.map(|e| e.to_string()).as_deref(),
        Some("alice@example.com")
    );
    let unverified = verified_claim(Some("alice@example.com"), Some(&json!(false)));
    app.data
        .blocking(|c| record_login(c, &who, unverified.as_ref(), chrono::Utc::now()))
        .unwrap();
    assert_eq!(
        ca_server::store::integrations::verified_email(&conn, &who).unwrap(),
        None
    );
}

#[tokio::test]
async fn oidc_user_with_the_email_but_unverified_is_never_auto_approved() {
    // issue 17 (bad input): with the real npm oidc-provider, alice's login
    // says `email_verified: true`; mallory's carries the same address with
    // `email_verified: false`. PagerDuty has a user with that address on
    // call: only alice is approved at once.
    use tpa_testkit::sso::{Browser, Provider, add_connector, callback_uri, csrf, post_json};
    let listener = tpa_testkit::sso::reserve().await;
    let address = listener.local_addr().unwrap();
    let mut users = tpa_testkit::sso::users();
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
        tpa_testkit::sso::set_public_url(data, address);
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
