//! Single sign-on against the real npm `oidc-provider` (tests/oidc-provider),
//! started on 127.0.0.1 for each test: web login, refused callbacks (replay,
//! missing/foreign state, nonce, another provider's code, expired ID token),
//! identities by subject, `next=` checks, a provider that is down, and the
//! CLI loopback login at the API level. Issue 4.

use serde_json::json;

use crate::helpers::sso::{
    Browser, Provider, add_connector, ca_with_provider, callback_uri, cli_pkce, continue_to, csrf,
    post_json, query_param, reserve, set_public_url, spawn_app_at_address, spawn_tpa_ssh_login,
    users,
};
use crate::helpers::{TestApp, audit_rows, count, http_send, spawn_app_at};

/// A CA listening on a port known in advance, with connectors for `issuers`.
async fn ca(issuers: &[(&str, String)], roles: bool) -> TestApp {
    let issuers: Vec<(String, String)> = issuers
        .iter()
        .map(|(n, i)| ((*n).to_owned(), i.clone()))
        .collect();
    spawn_app_at(move |data, address| {
        set_public_url(data, address);
        if roles {
            data.edit_config(|t| format!("{t}{}", ca_server::config::EXAMPLE_ROLES));
        }
        for (name, issuer) in &issuers {
            add_connector(data, name, issuer);
        }
    })
    .await
}

#[tokio::test]
async fn web_login_with_groups_from_the_claim_and_identity_by_subject() {
    let (provider, app) = ca_with_provider(json!({}), false).await;
    let mut browser = Browser::default();
    // The login page offers the connector.
    let page = browser.get(&format!("http://{}/login", app.address)).await;
    assert!(page.body.contains("id=\"oidc-idp\""), "{}", page.body);
    assert!(
        page.body.contains("&#x2f;login&#x2f;oidc&#x2f;idp?next="),
        "{}",
        page.body
    );

    let done = browser.web_login(&app, "idp", "alice", "/my").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(continue_to(&done), "/my");
    assert!(browser.cookie(app.address.port(), "tpa_session").is_some());
    assert!(
        browser.cookie(app.address.port(), "tpa_oidc").is_none(),
        "binding cleared"
    );
    let me = browser.whoami(&app).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["user"]["identity"]["issuer"], provider.issuer());
    assert_eq!(me["user"]["identity"]["subject"], "alice-sub-1");
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["user"]["groups"], json!(["engineers", "sre-leads"]));
    // Issue 12: the `name` claim, kept with the web session.
    assert_eq!(me["user"]["display_name"], "Alice A");
    assert_eq!(me["via"], "session");

    let audit = audit_rows(&app.data.open_plain());
    let login = audit.iter().find(|r| r.action == "auth.login").unwrap();
    assert_eq!(login.outcome, "success");
    assert_eq!(login.reason, "oidc login via idp");
    assert_eq!(
        login.actor,
        format!("user:{}#alice-sub-1", provider.issuer())
    );
    // Secrets are stored hashed; nothing of the exchange is logged in the audit trail.
    let details: String = audit.iter().map(|r| r.details.clone()).collect();
    assert!(!details.contains("tpa-test-secret"));
}

#[tokio::test]
async fn replayed_missing_empty_and_foreign_state_are_refused() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let mut browser = Browser::default();
    let callback = browser
        .login_at_provider(&app, "/login/oidc/idp?next=/", "alice")
        .await;
    let first = browser.get(&callback).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let sessions = count(&app.data.open_plain(), "auth_tokens");

    // Replay: same code and state, same browser (binding cookie restored).
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("invalid_login_state"));

    let base = format!("http://{}/oidc/callback", app.address);
    for url in [
        format!("{base}?code=abc"),
        format!("{base}?state=&code=abc"),
        format!("{base}?state=never-issued&code=abc"),
        base.clone(),
    ] {
        let r = browser.get(&url).await;
        assert_eq!(r.status, 400, "{url}: {}", r.body);
    }

    // Foreign: a state issued to another browser, delivered by this one.
    let mut other = Browser::default();
    let foreign = other
        .login_at_provider(&app, "/login/oidc/idp?next=/", "alice")
        .await;
    let r = browser.get(&foreign).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // ... and the state is spent: the right browser cannot use it afterwards either.
    let r = other.get(&foreign).await;
    assert_eq!(r.status, 400, "{}", r.body);

    assert_eq!(count(&app.data.open_plain(), "auth_tokens"), sessions);
    let reasons: Vec<String> = audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|r| r.action == "auth.login" && r.outcome == "denied")
        .map(|r| r.reason)
        .collect();
    for expected in [
        "state already used",
        "missing state",
        "unknown state",
        "state bound to another browser",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected}: {reasons:?}"
        );
    }
}

#[tokio::test]
async fn nonce_mismatch_is_refused() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let mut browser = Browser::default();
    let callback = browser
        .login_at_provider(&app, "/login/oidc/idp?next=/", "alice")
        .await;
    app.data
        .open_plain()
        .exec("UPDATE oidc_logins SET nonce = 'tampered-nonce'", &[]);
    let r = browser.get(&callback).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("login_not_verified"), "{}", r.body);
    assert!(
        !r.body.to_lowercase().contains("nonce"),
        "no internal detail: {}",
        r.body
    );
    assert_eq!(count(&app.data.open_plain(), "auth_tokens"), 0);
    let denied = audit_rows(&app.data.open_plain())
        .into_iter()
        .find(|r| r.outcome == "denied")
        .unwrap();
    assert!(
        denied.reason.to_lowercase().contains("nonce"),
        "{}",
        denied.reason
    );
}

#[tokio::test]
async fn expired_id_token_is_refused() {
    // The provider's clock runs 10 minutes behind with 60 s ID tokens: each
    // ID token expired 9 minutes ago, beyond the 60 s leeway.
    let (_provider, app) =
        ca_with_provider(json!({"clock_offset": -600, "id_token_ttl": 60}), false).await;
    let mut browser = Browser::default();
    let r = browser.web_login(&app, "idp", "alice", "/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(count(&app.data.open_plain(), "auth_tokens"), 0);
    let denied = audit_rows(&app.data.open_plain())
        .into_iter()
        .find(|r| r.outcome == "denied")
        .unwrap();
    assert!(denied.reason.contains("expired"), "{}", denied.reason);
}

#[tokio::test]
async fn id_tokens_for_another_audience_are_refused() {
    // The provider re-signs each ID token (with its real key) for another
    // client, then for this client plus an untrusted one.
    for audience in [json!("someone-else"), json!(["tpa", "someone-else"])] {
        let (_provider, app) =
            ca_with_provider(json!({ "id_token_audience": audience }), false).await;
        let mut browser = Browser::default();
        let r = browser.web_login(&app, "idp", "alice", "/").await;
        assert_eq!(r.status, 403, "{audience}: {}", r.body);
        assert!(r.body.contains("login_not_verified"), "{}", r.body);
        assert_eq!(count(&app.data.open_plain(), "auth_tokens"), 0);
        let denied = audit_rows(&app.data.open_plain())
            .into_iter()
            .find(|r| r.outcome == "denied")
            .unwrap();
        assert!(
            denied.reason.to_lowercase().contains("audience"),
            "{audience}: {}",
            denied.reason
        );
    }
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_once_then_rate_limited() {
    // Issue 4: key rotation at the provider no longer needs a CA restart.
    let listener = reserve().await;
    let address = listener.local_addr().unwrap();
    let first = Provider::start(&callback_uri(address), users(), json!({}));
    let port = first.port;
    let app = spawn_app_at_address(&[("idp", first.issuer())], false, listener).await;
    let mut browser = Browser::default();
    assert_eq!(
        browser.web_login(&app, "idp", "alice", "/").await.status,
        200
    );

    // Restarted on the same port: a new key under a new `kid`. The CA still
    // holds the old key set; the unknown `kid` makes it fetch the new one.
    drop(first);
    let second = Provider::start_on(port, &callback_uri(address), users(), json!({}));
    let mut browser = Browser::default();
    let r = browser.web_login(&app, "idp", "alice", "/").await;
    assert_eq!(r.status, 200, "after a rotation: {}", r.body);

    // Another rotation within a minute: no second fetch, so the login is refused.
    drop(second);
    let _third = Provider::start_on(port, &callback_uri(address), users(), json!({}));
    let mut browser = Browser::default();
    let r = browser.web_login(&app, "idp", "alice", "/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    let denied = audit_rows(&app.data.open_plain())
        .into_iter()
        .find(|r| r.outcome == "denied")
        .unwrap();
    assert!(denied.reason.contains("key"), "{}", denied.reason);
}

#[tokio::test]
async fn a_second_providers_code_is_refused_at_the_first_ones_login() {
    let listener = reserve().await;
    let address = listener.local_addr().unwrap();
    let one = Provider::start(&callback_uri(address), users(), json!({}));
    let two = Provider::start(&callback_uri(address), users(), json!({}));
    let app = spawn_app_at_address(
        &[("one", one.issuer()), ("two", two.issuer())],
        false,
        listener,
    )
    .await;
    let mut browser = Browser::default();
    // A login started with provider one: its state is bound to this browser.
    let at_one = browser
        .login_at_provider(&app, "/login/oidc/one?next=/", "alice")
        .await;
    let state_one = query_param(&at_one, "state");
    // The attacker's login at provider two gives a code (and iss) of provider two.
    let mut attacker = Browser::default();
    let at_two = attacker
        .login_at_provider(&app, "/login/oidc/two?next=/", "mallory")
        .await;
    let code_two = query_param(&at_two, "code");
    let iss_two = query_param(&at_two, "iss");
    let base = format!("http://{}/oidc/callback", app.address);
    // With provider two's `iss`: refused before any exchange.
    let r = browser
        .get(&format!(
            "{base}?code={code_two}&state={state_one}&iss={iss_two}"
        ))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Without `iss` (a fresh login at one): provider one refuses provider two's code.
    let at_one = browser
        .login_at_provider(&app, "/login/oidc/one?next=/", "alice")
        .await;
    let state_one = query_param(&at_one, "state");
    let r = browser
        .get(&format!("{base}?code={code_two}&state={state_one}"))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(count(&app.data.open_plain(), "auth_tokens"), 0);
    let reasons: Vec<String> = audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|r| r.outcome == "denied")
        .map(|r| r.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("issuer mismatch")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("code exchange")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn same_email_and_username_but_another_subject_is_another_user() {
    let (_provider, app) = ca_with_provider(json!({}), true).await;
    let mut alice = Browser::default();
    assert_eq!(alice.web_login(&app, "idp", "alice", "/").await.status, 200);
    let token = csrf(&mut alice, &app).await;
    let body = json!({
        "role": "read-only-debug", "hosts": ["web-1"], "duration": "2h",
        "reason": "INC-4411 disk full",
    })
    .to_string();
    let created = post_json(&alice, &app, "/api/v1/requests", &token, &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["request"]["id"].as_str().unwrap().to_owned();

    // Mallory: same email, same preferred_username, another subject.
    let mut mallory = Browser::default();
    assert_eq!(
        mallory.web_login(&app, "idp", "mallory", "/").await.status,
        200
    );
    let me = mallory.whoami(&app).await.json();
    assert_eq!(me["user"]["identity"]["subject"], "mallory-sub-2");
    assert_eq!(me["user"]["groups"], json!([]));
    let token = csrf(&mut mallory, &app).await;
    let cancel = post_json(
        &mallory,
        &app,
        &format!("/api/v1/requests/{id}/cancel"),
        &token,
        "",
    )
    .await;
    // Not hers: the request is not even visible to her.
    assert!(matches!(cancel.status, 403 | 404), "{}", cancel.body);
    let approve = post_json(
        &mallory,
        &app,
        &format!("/api/v1/requests/{id}/approve"),
        &token,
        "{}",
    )
    .await;
    assert!(matches!(approve.status, 403 | 404), "{}", approve.body);
    let mine = alice
        .get(&format!("http://{}/api/v1/requests/{id}", app.address))
        .await;
    assert_eq!(mine.json()["state"], "pending", "{}", mine.body);
}

#[tokio::test]
async fn off_site_next_values_go_to_the_root_and_bad_usernames_are_refused() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    for next in [
        "//evil.example",
        "https:evil.example",
        "/%5Cevil.example",
        "/\\evil.example",
    ] {
        let mut browser = Browser::default();
        let done = browser.web_login(&app, "idp", "alice", next).await;
        assert_eq!(done.status, 200, "{next}: {}", done.body);
        let target = continue_to(&done);
        assert!(
            target == "/"
                || (target.starts_with('/') && !target.starts_with("//") && !target.contains('\\')),
            "{next} → {target}"
        );
        if next != "/%5Cevil.example" {
            assert_eq!(target, "/", "{next}");
        }
    }
    let mut browser = Browser::default();
    let r = browser.web_login(&app, "idp", "bad-name", "/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("unusable_username"), "{}", r.body);
}

#[tokio::test]
async fn provider_down_gives_an_error_page_no_session_and_a_red_health_check() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let app = ca(&[("down", issuer)], false).await;
    let mut browser = Browser::default();
    let r = browser
        .get(&format!("http://{}/login/oidc/down?next=/", app.address))
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("idp_unavailable"), "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let plain = app.data.open_plain();
    assert_eq!(count(&plain, "auth_tokens"), 0);
    assert_eq!(count(&plain, "oidc_logins"), 0);
    let health = app.get("/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let health = health.json();
    assert_eq!(health["status"], "degraded");
    let check = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "oidc:down")
        .unwrap()
        .clone();
    assert_eq!(check["ok"], false);
}

/// An "OpenID provider" that answers every request with 200 and a body that is
/// not JSON. The task ends when the test's runtime does.
async fn garbage_provider() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        // Bounded: a login start asks for discovery a few times at most.
        for _ in 0..64 {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let body = "<html>surprise, not JSON</html>";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    issuer
}

/// Issue 4: a provider that answers garbage is treated like one that is down:
/// an HTML error page, no login row, no session, a degraded health check.
#[tokio::test]
async fn provider_answering_garbage_gives_an_error_page_and_no_session() {
    let issuer = garbage_provider().await;
    let app = ca(&[("junk", issuer)], false).await;
    let mut browser = Browser::default();
    let r = browser
        .get(&format!("http://{}/login/oidc/junk?next=/", app.address))
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("idp_unavailable"), "{}", r.body);
    assert!(!r.body.contains("surprise"), "{}", r.body);
    let plain = app.data.open_plain();
    assert_eq!(count(&plain, "auth_tokens"), 0);
    assert_eq!(count(&plain, "oidc_logins"), 0);
    let health = app.get("/healthz").await.json();
    assert_eq!(health["status"], "degraded", "{health}");
}

#[tokio::test]
async fn provider_down_at_the_callback_gives_an_error_page() {
    let (provider, app) = ca_with_provider(json!({}), false).await;
    let mut browser = Browser::default();
    let callback = browser
        .login_at_provider(&app, "/login/oidc/idp?next=/", "alice")
        .await;
    drop(provider);
    let r = browser.get(&callback).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(count(&app.data.open_plain(), "auth_tokens"), 0);
}

#[tokio::test]
async fn cli_loopback_login_gives_an_api_token_once() {
    let (provider, app) = ca_with_provider(json!({}), false).await;
    let (verifier, challenge) = cli_pkce();
    let redirect = "http://127.0.0.1:49999/callback";
    let mut browser = Browser::default();
    let start = format!(
        "/cli/login?redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
        redirect.replace(':', "%3A").replace('/', "%2F")
    );
    let back = browser.login_at_provider(&app, &start, "alice").await;
    let signed_in = browser.get(&back).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert_eq!(
        count(&app.data.open_plain(), "cli_login_codes"),
        0,
        "no code before the consent (issue 4 follow-up)"
    );
    let consent = crate::helpers::open_consent(&mut browser, &app, &signed_in).await;
    let location = crate::helpers::decide(&mut browser, &app, &consent, "approve").await;
    assert!(
        location.starts_with(&format!("{redirect}?code=")),
        "{location}"
    );
    assert_eq!(
        count(&app.data.open_plain(), "auth_tokens"),
        1,
        "only the browser's web session, no API token before the exchange"
    );
    let code = query_param(&location, "code");

    let exchange = |code: String, verifier: String, redirect: String| {
        let body =
            json!({"code": code, "code_verifier": verifier, "redirect_uri": redirect}).to_string();
        let address = app.address;
        async move {
            http_send(
                address,
                "POST",
                "/api/v1/cli/token",
                &[("Content-Type", "application/json")],
                &body,
            )
            .await
        }
    };
    // A wrong verifier spends the code.
    let wrong = exchange(code.clone(), "w".repeat(50), redirect.to_owned()).await;
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    assert_eq!(wrong.json()["code"], "invalid_grant");
    let again = exchange(code, verifier.clone(), redirect.to_owned()).await;
    assert_eq!(again.status, 400, "one attempt per code: {}", again.body);

    // A fresh CLI login in the same browser: its web session goes straight
    // to a new consent page, without the provider; exchanged correctly.
    let again = browser.get(&format!("http://{}{start}", app.address)).await;
    assert_eq!(again.status, 303, "{}", again.body);
    let to = again.header("location").unwrap().to_owned();
    assert!(to.starts_with("/cli/consent/"), "{to}");
    assert_ne!(to, consent.path);
    let consent = crate::helpers::consent_at(&mut browser, &app, &to).await;
    let location = crate::helpers::decide(&mut browser, &app, &consent, "approve").await;
    let code = query_param(&location, "code");
    let ok = exchange(code.clone(), verifier.clone(), redirect.to_owned()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let answer = ok.json();
    let token = answer["token"].as_str().unwrap();
    assert!(token.starts_with("tpa_"));
    assert_eq!(answer["user"]["identity"]["issuer"], provider.issuer());
    assert_eq!(answer["user"]["groups"], json!(["engineers", "sre-leads"]));
    let me = http_send(
        app.address,
        "GET",
        "/api/v1/whoami",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["via"], "api_token");
    // Issue 12: the provider's `name` claim is kept with the loopback login's token.
    assert_eq!(me.json()["user"]["display_name"], "Alice A");
    let replay = exchange(code, verifier, redirect.to_owned()).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
}

#[tokio::test]
async fn cli_login_refuses_non_loopback_redirects() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let (_, challenge) = cli_pkce();
    for redirect in [
        "http://evil.example:8080/callback",
        "http://localhost:8080/callback",
        "https://127.0.0.1:8080/callback",
        "http://127.0.0.1/callback",
        "http://127.0.0.1.evil.example:8080/callback",
    ] {
        let path = format!(
            "/cli/login?redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
            redirect.replace(':', "%3A").replace('/', "%2F")
        );
        let r = app.get(&path).await;
        assert_eq!(r.status, 400, "{redirect}: {}", r.body);
        assert!(r.body.contains("invalid_cli_login"), "{}", r.body);
    }
    let plain = format!(
        "/cli/login?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcallback&code_challenge={challenge}&code_challenge_method=plain"
    );
    assert_eq!(app.get(&plain).await.status, 400);
    assert_eq!(count(&app.data.open_plain(), "oidc_logins"), 0);
}

/// `tpa-ssh login --ca URL` with SSO: the real CLI binary, its loopback listener,
/// the real provider, the consent page, and the token saved for later commands.
#[tokio::test]
async fn tpa_ssh_sso_login_through_its_loopback_listener() {
    let (provider, app) = ca_with_provider(json!({}), false).await;
    let (child, url, home, _stderr) = spawn_tpa_ssh_login(&app).await;

    let mut browser = Browser::default();
    let back = browser.login_at_provider(&app, &url, "alice").await;
    let signed_in = browser.get(&back).await;
    let consent = crate::helpers::open_consent(&mut browser, &app, &signed_in).await;
    let loopback = crate::helpers::decide(&mut browser, &app, &consent, "approve").await;
    let landed = browser.get(&loopback).await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    assert!(landed.body.contains("logged in"), "{}", landed.body);

    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Logged in"));
    let session: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join(".config/tpa/session.json")).unwrap(),
    )
    .unwrap();
    let token = session["token"].as_str().unwrap();
    let me = http_send(
        app.address,
        "GET",
        "/api/v1/whoami",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["user"]["identity"]["issuer"], provider.issuer());
}

/// Issue 7, item 3: the auditor group can come from the provider's groups
/// claim; a user without it is refused the audit pages.
#[tokio::test]
async fn an_auditor_group_from_the_groups_claim_opens_the_audit_pages() {
    let listener = reserve().await;
    let address = listener.local_addr().unwrap();
    let provider = Provider::start(&callback_uri(address), users(), json!({}));
    let issuer = provider.issuer();
    let app = crate::helpers::spawn_app_bound(listener, move |data, address| {
        set_public_url(data, address);
        add_connector(data, "idp", &issuer);
        data.edit_config(|t| format!("{t}\n[auditors]\ngroups = [\"sre-leads\"]\n"));
    })
    .await;
    let audit = format!("http://{}/audit", app.address);
    let mut alice = Browser::default();
    let done = alice.web_login(&app, "idp", "alice", "/audit").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let page = alice.get(&audit).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("oidc login via idp"), "{}", page.body);
    let mut mallory = Browser::default();
    let done = mallory.web_login(&app, "idp", "mallory", "/").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let page = mallory.get(&audit).await;
    assert_eq!(page.status, 403, "{}", page.body);
    drop(provider);
}
