//! Issue 16: a CA whose people and groups come from a real slapd: web and
//! API login for each test person, the two-stage approval with directory
//! approvers, groups re-read live (a removal takes effect within the cache
//! time), and a stopped directory failing logins, decisions and issuance
//! closed while reads go on.

use std::time::{Duration, Instant};

use ca_server::config::EXAMPLE_ROLES;
use serde_json::json;

use crate::helpers::HOTFIX;
use crate::helpers::{Response, TestApp, ed25519_public_key, http_send, spawn_app_with};
use crate::slapd::{self, GROUPS, PEOPLE, Slapd, password};

/// A CA with the example roles and the directory as its only people.
async fn ca(server: &Slapd, extra: &str) -> TestApp {
    let block = slapd::connector_toml(server, server.dir.path(), extra);
    spawn_app_with(|data| {
        data.edit_config(|t| format!("{t}{EXAMPLE_ROLES}{block}"));
    })
    .await
}

async fn api_login(app: &TestApp, user: &str, pw: &str) -> Response {
    let body = json!({ "username": user, "password": pw }).to_string();
    http_send(
        app.address,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await
}

async fn token(app: &TestApp, user: &str) -> String {
    let r = api_login(app, user, &password(user)).await;
    assert_eq!(r.status, 200, "{user}: {}", r.body);
    r.json()["token"].as_str().unwrap().to_owned()
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn web_login(app: &TestApp, user: &str, pw: &str) -> Response {
    let body = format!(
        "username={}&password={}",
        form_encode(user),
        form_encode(pw)
    );
    http_send(
        app.address,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await
}

fn groups(user: &serde_json::Value) -> Vec<String> {
    user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect()
}

fn last_login_reason(app: &TestApp) -> String {
    app.data.open_plain().one(
        "SELECT reason FROM audit_events WHERE action = 'auth.login' ORDER BY seq DESC LIMIT 1",
        &[],
    )
}

fn remove_from_group(server: &Slapd, group: &str, member: &str) {
    server.modify(&format!(
        "dn: cn={group},{GROUPS}\nchangetype: modify\ndelete: member\nmember: uid={member},{PEOPLE}\n"
    ));
}

// issue 16: web login and API login (what `tpa-ssh login --password-stdin`
// calls) for each person, with their directory groups.
#[tokio::test]
async fn ldap_users_log_in_on_the_web_form_and_the_api() {
    let server = Slapd::start();
    let app = ca(&server, "").await;
    let expected: [(&str, &[&str]); 5] = [
        ("alice", &["engineers"]),
        ("bob", &["sre-leads"]),
        ("carol", &["managers", "mgmt-staff"]),
        ("dave", &["auditors"]),
        ("eve", &[]),
    ];
    for (user, want) in expected {
        let r = api_login(&app, user, &password(user)).await;
        assert_eq!(r.status, 200, "{user}: {}", r.body);
        let info = &r.json()["user"];
        assert_eq!(info["username"], user);
        assert_eq!(groups(info), want, "{user}");
        assert_eq!(
            info["identity"]["issuer"],
            format!("{}/{PEOPLE}", server.ldaps_url())
        );
        assert_eq!(info["identity"]["subject"].as_str().unwrap().len(), 36);
        assert_eq!(last_login_reason(&app), "ldap login via corp");
        // issues 16 and 17: the directory's `mail` is the verified email
        // on-call providers match the person by.
        let identity = tpa_core::Identity::new(
            info["identity"]["issuer"].as_str().unwrap(),
            info["identity"]["subject"].as_str().unwrap(),
        )
        .unwrap();
        let email =
            ca_server::store::integrations::verified_email(&app.data.open_store(), &identity)
                .unwrap()
                .map(|e| e.as_str().to_owned());
        assert_eq!(
            email.as_deref(),
            Some(format!("{user}@example.org").as_str())
        );

        let page = web_login(&app, user, &password(user)).await;
        assert_eq!(page.status, 303, "{user}: {}", page.body);
        let cookie = page
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let who = http_send(
            app.address,
            "GET",
            "/api/v1/whoami",
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(who.status, 200, "{}", who.body);
        assert_eq!(who.json()["via"], "session");
        assert_eq!(groups(&who.json()["user"]), want, "{user} (web)");

        let wrong = web_login(&app, user, "not the password").await;
        assert_eq!(wrong.status, 401);
        assert!(wrong.body.contains("Unknown username or wrong password"));
    }
    let health = app.get("/healthz").await.json();
    let check = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ldap:corp")
        .unwrap()
        .clone();
    assert_eq!(check["ok"], true, "{health}");
}

// issue 16: an empty password never reaches slapd (which would accept it as
// an unauthenticated bind); the audit trail says so.
#[tokio::test]
async fn api_login_with_an_empty_password_is_refused_before_any_bind() {
    let server = Slapd::start();
    let app = ca(&server, "").await;
    let r = api_login(&app, "alice", "").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    assert_eq!(
        last_login_reason(&app),
        "invalid credentials (refused before any bind)"
    );
    let page = web_login(&app, "alice", "").await;
    assert_eq!(page.status, 401);
}

// issue 16: the password was right, so the refusal says why.
#[tokio::test]
async fn disabled_and_expired_directory_accounts_are_told_why() {
    let server = Slapd::start();
    let app = ca(&server, "").await;
    let r = api_login(&app, "frank", &password("frank")).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("account_disabled"))
    );
    assert!(r.json()["message"].as_str().unwrap().contains("disabled"));
    let r = api_login(&app, "grace", &password("grace")).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("password_expired"))
    );
    let page = web_login(&app, "frank", &password("frank")).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("disabled"), "{}", page.body);
    let page = web_login(&app, "grace", &password("grace")).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("expired"), "{}", page.body);
}

// issue 16: several entries for one username log nobody in.
#[tokio::test]
async fn api_login_of_a_username_with_two_entries_is_refused() {
    let server = Slapd::start();
    let app = ca(&server, "").await;
    let r = api_login(&app, "twin", &password("twin")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        last_login_reason(&app),
        "invalid credentials (several directory entries match)"
    );
}

// issue 16: the failed-login limits of the password form apply.
#[tokio::test]
async fn failed_login_limits_apply_to_directory_logins() {
    let server = Slapd::start();
    let app = ca(&server, "").await;
    let mut limited = None;
    for attempt in 0..8 {
        let r = api_login(&app, "alice", "wrong password").await;
        if r.status == 429 {
            limited = Some(attempt);
            break;
        }
        assert_eq!(r.status, 401, "{}", r.body);
    }
    assert_eq!(limited, Some(5), "the sixth wrong password is refused");
}

// issue 16: the demo's two-stage approval with directory approvers (carol
// is a manager through a nested group).
#[tokio::test]
async fn two_stage_approval_with_ldap_approvers() {
    let server = Slapd::start();
    let app = ca(&server, "").await;
    let (alice, bob, carol, eve) = (
        token(&app, "alice").await,
        token(&app, "bob").await,
        token(&app, "carol").await,
        token(&app, "eve").await,
    );
    let id = app.submit(&alice, HOTFIX).await;
    let approve = |t: &str| {
        let t = t.to_owned();
        let path = format!("/api/v1/requests/{id}/approve");
        let app = &app;
        async move { app.post_as(&t, &path, "{}").await }
    };
    let r = approve(&alice).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = approve(&eve).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_approver"))
    );
    let r = approve(&bob).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["still_needed"]["group"], "managers");
    let r = approve(&carol).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "approved");
    let key = json!({ "public_key": ed25519_public_key() }).to_string();
    let cert = app
        .post_as(&alice, &format!("/api/v1/requests/{id}/certificate"), &key)
        .await;
    assert_eq!(cert.status, 200, "{}", cert.body);
}

/// Submits a hotfix request as alice and returns its id.
async fn hotfix(app: &TestApp) -> String {
    let alice = token(app, "alice").await;
    app.submit(&alice, HOTFIX).await
}

// issue 16: bob is removed from sre-leads in the directory; his next
// approval is refused once the cache time (2 s) has passed.
#[tokio::test]
async fn bob_removed_from_sre_leads_is_refused_within_the_cache_time() {
    let server = Slapd::start();
    let app = ca(&server, "groups_cache = \"2s\"").await;
    let bob = token(&app, "bob").await;
    let first = hotfix(&app).await;
    let r = app
        .post_as(&bob, &format!("/api/v1/requests/{first}/approve"), "{}")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = hotfix(&app).await;
    remove_from_group(&server, "sre-leads", "bob");
    let removed = Instant::now();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app
        .post_as(&bob, &format!("/api/v1/requests/{second}/approve"), "{}")
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_approver")),
        "{}",
        r.body
    );
    assert!(removed.elapsed() < Duration::from_secs(10));
    // The same live groups count when the request is decided again: bob's
    // earlier approval of the first request no longer stands, so it is back
    // at the sre-leads stage and a manager cannot approve it yet.
    let carol = token(&app, "carol").await;
    let r = app
        .post_as(&carol, &format!("/api/v1/requests/{first}/approve"), "{}")
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_approver")),
        "{}",
        r.body
    );
    assert!(
        r.json()["message"].as_str().unwrap().contains("sre-leads"),
        "back at the first stage: {}",
        r.body
    );
}

// issue 16: with `groups_cache = "0s"` every decision asks the directory.
#[tokio::test]
async fn zero_cache_rereads_groups_at_every_decision() {
    let server = Slapd::start();
    let app = ca(&server, "groups_cache = \"0s\"").await;
    let bob = token(&app, "bob").await;
    let id = hotfix(&app).await;
    remove_from_group(&server, "sre-leads", "bob");
    let r = app
        .post_as(&bob, &format!("/api/v1/requests/{id}/approve"), "{}")
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("not_approver")),
        "{}",
        r.body
    );
}

// issue 16: slapd stopped: logins, decisions and issuance fail closed with
// a clear error (503 directory_unavailable + Retry-After); reads go on
// without groups; /healthz shows the directory down.
#[tokio::test]
async fn stopped_directory_fails_login_and_issuance_closed() {
    let mut server = Slapd::start();
    let app = ca(&server, "groups_cache = \"0s\"\ntimeout = \"2s\"").await;
    let (alice, bob, carol) = (
        token(&app, "alice").await,
        token(&app, "bob").await,
        token(&app, "carol").await,
    );
    let approved = hotfix(&app).await;
    let pending = hotfix(&app).await;
    for t in [&bob, &carol] {
        let r = app
            .post_as(t, &format!("/api/v1/requests/{approved}/approve"), "{}")
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    server.stop();

    let key = json!({ "public_key": ed25519_public_key() }).to_string();
    let r = app
        .post_as(
            &alice,
            &format!("/api/v1/requests/{approved}/certificate"),
            &key,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (503, Some("directory_unavailable")),
        "{}",
        r.body
    );
    assert!(r.header("retry-after").is_some());
    assert!(
        r.json()["message"].as_str().unwrap().contains("corp"),
        "{}",
        r.body
    );

    let r = app
        .post_as(&bob, &format!("/api/v1/requests/{pending}/approve"), "{}")
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (503, Some("directory_unavailable"))
    );

    let r = api_login(&app, "alice", &password("alice")).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (503, Some("directory_unavailable")),
        "{}",
        r.body
    );
    let page = web_login(&app, "alice", &password("alice")).await;
    assert_eq!(page.status, 503);
    assert!(
        page.body.contains("directory cannot be reached"),
        "{}",
        page.body
    );

    // Reads go on, with no groups.
    let r = app
        .get_as(&alice, &format!("/api/v1/requests/{approved}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let who = app.get_as(&bob, "/api/v1/whoami").await;
    assert_eq!(who.status, 200);
    assert!(groups(&who.json()["user"]).is_empty());

    let health = app.get("/healthz").await.json();
    assert_eq!(health["status"], "degraded", "{health}");
    let check = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ldap:corp")
        .unwrap()
        .clone();
    assert_eq!(check["ok"], false, "{health}");
}
