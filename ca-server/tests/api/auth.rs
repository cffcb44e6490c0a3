//! Login, sessions and API tokens over real HTTP: `/api/v1/login|logout|whoami`,
//! the web login form, cookies, CSRF, same-origin checks, rate limits and the
//! security headers of pages. Issue 3, item 7.

use std::net::{IpAddr, Ipv4Addr};

use crate::helpers::{Response, TestApp, audit_rows, http_send_from, spawn_app_with};

const PASSWORD: &str = "correct horse battery staple";

/// A server with alice (engineers) and bob (sre-leads).
async fn app() -> TestApp {
    spawn_app_with(|data| {
        data.add_account_named(
            "alice",
            Some("Alice <script>alert(1)</script>"),
            PASSWORD,
            &["engineers"],
        );
        data.add_account("bob", "bobs password", &["sre-leads"]);
    })
    .await
}

/// An API token for alice.
async fn token(app: &TestApp) -> String {
    app.login_as("alice", PASSWORD).await
}

/// `tpa_session=<value>` from a response's Set-Cookie.
fn session_cookie(r: &Response) -> String {
    let set = r
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {r:?}"));
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn api_login_returns_a_token_that_whoami_accepts() {
    let app = app().await;

    let r = app.api_login("alice", PASSWORD).await;

    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("tpa_") && token.len() == 47, "{token}");
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(body["user"]["groups"], serde_json::json!(["engineers"]));
    assert_eq!(
        body["user"]["identity"],
        serde_json::json!({ "issuer": "tpa:local", "subject": "alice" })
    );
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    let who = app.whoami(token).await;
    assert_eq!(who.status, 200, "{}", who.body);
    assert_eq!(who.json()["user"]["username"], "alice");
    assert_eq!(who.json()["via"], "api_token");
    // Issue 12: the account's display name is kept with the token.
    assert_eq!(
        who.json()["user"]["display_name"],
        "Alice <script>alert(1)</script>"
    );
    assert_eq!(who.json()["expires_at"], body["expires_at"]);
    // Stored hashed, audited with the source address.
    let conn = app.data.open_plain();
    let stored: String = conn.one("SELECT token_hash FROM auth_tokens", &[]);
    assert_ne!(stored, token);
    assert!(!stored.contains(&token[4..]));
    let login = audit_rows(&conn)
        .into_iter()
        .find(|e| e.action == "auth.login")
        .unwrap();
    assert_eq!(
        (login.actor.as_str(), login.outcome.as_str()),
        ("user:tpa:local#alice", "success")
    );
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = app().await;

    let wrong = app.api_login("alice", "not it").await;
    let unknown = app.api_login("mallory", "not it").await;

    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.json()["code"], "invalid_credentials");
    let denied: Vec<_> = audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|e| e.action == "auth.login")
        .collect();
    assert_eq!(denied.len(), 2);
    assert!(
        denied
            .iter()
            .all(|e| e.outcome == "denied" && e.actor == "anonymous")
    );
    assert_eq!(denied[1].object, "user:mallory");
    assert!(
        denied[1]
            .details
            .contains(r#""attempted_username":"mallory""#),
        "{}",
        denied[1].details
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_json_errors() {
    let app = app().await;
    let json = [("Content-Type", "application/json")];

    let r = app.send("POST", "/api/v1/login", &json, "{not json").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let r = app
        .send("POST", "/api/v1/login", &json, r#"{"username":"alice"}"#)
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let r = app
        .send(
            "POST",
            "/api/v1/login",
            &[],
            r#"{"username":"a","password":"b"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let huge = format!(
        r#"{{"username":"alice","password":"{}"}}"#,
        "x".repeat(100_000)
    );
    let r = app.send("POST", "/api/v1/login", &json, &huge).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    app.stop().await;
}

#[tokio::test]
async fn missing_bad_and_revoked_tokens_are_unauthenticated() {
    let app = app().await;
    let token = token(&app).await;

    let none = app.send("GET", "/api/v1/whoami", &[], "").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["code"], "unauthenticated");
    assert!(none.json()["message"].as_str().unwrap().contains("log in"));
    assert_eq!(app.whoami("tpa_AAAA").await.status, 401);
    assert_eq!(
        app.whoami(&token.replacen("tpa_", "tpas_", 1)).await.status,
        401
    );

    let auth = format!("Bearer {token}");
    let r = app
        .send("POST", "/api/v1/logout", &[("Authorization", &auth)], "")
        .await;
    assert_eq!(r.status, 204, "{}", r.body);

    let after = app.whoami(&token).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.json()["code"], "unauthenticated");
    let rows = audit_rows(&app.data.open_plain());
    assert!(
        rows.iter()
            .any(|e| e.action == "auth.logout" && e.outcome == "success")
    );
    app.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let app = spawn_app_with(|data| {
        data.add_account("alice", PASSWORD, &[]);
        data.edit_config(|t| t.replace("api_token_ttl = \"12h\"", "api_token_ttl = \"1s\""));
    })
    .await;
    let token = token(&app).await;
    assert_eq!(app.whoami(&token).await.status, 200);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    assert_eq!(app.whoami(&token).await.status, 401);
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_username() {
    let app = app().await;
    for _ in 0..5 {
        assert_eq!(app.api_login("alice", "guess").await.status, 401);
    }

    let limited = app.api_login("alice", PASSWORD).await;

    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.json()["code"], "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // Another user from the same address still gets in (5 < 20 per IP).
    assert_eq!(app.api_login("bob", "bobs password").await.status, 200);
    // The web form shares the limit.
    assert_eq!(app.web_login("alice", PASSWORD, &[]).await.status, 429);
    app.stop().await;
}

/// `POST /api/v1/login` from the loopback address `source`.
async fn api_login_from(app: &TestApp, source: IpAddr, username: &str, password: &str) -> Response {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    http_send_from(
        Some(source),
        app.address,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await
}

// issue 11: five wrong passwords for carol from anywhere locked carol out of
// password login for 5 minutes, so anyone could keep an approver out.
#[tokio::test]
async fn fifty_wrong_passwords_from_one_address_do_not_lock_out_the_right_password_from_another() {
    let app = app().await;
    let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let owner = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(
            api_login_from(&app, attacker, "alice", "guess")
                .await
                .status,
        );
    }

    let wrong = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((wrong, limited), (5, 45), "{statuses:?}");
    // The guessing address is limited for alice, even with her password…
    let r = api_login_from(&app, attacker, "alice", PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["code"], "rate_limited");
    // …while alice, from an address that did not fail, logs in.
    let r = api_login_from(&app, owner, "alice", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["token"].as_str().is_some());
    let web = http_send_from(
        Some(owner),
        app.address,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("username=alice&password={}", PASSWORD.replace(' ', "+")),
    )
    .await;
    assert_eq!(web.status, 303, "the web form too: {}", web.body);
    // Every counted failure and the first refusal are in the audit trail.
    let denied = audit_rows(&app.data.open_store())
        .into_iter()
        .filter(|e| e.action == "auth.login" && e.outcome == "denied")
        .count();
    assert_eq!(denied, 6);
    app.stop().await;
}

#[tokio::test]
async fn web_login_sets_a_strict_http_only_cookie_and_rotates_the_session() {
    let app = app().await;

    let first = app
        .web_login(
            "alice",
            PASSWORD,
            &[("Origin", &format!("http://{}", app.address))],
        )
        .await;

    assert_eq!(first.status, 303, "{}", first.body);
    assert_eq!(first.header("location"), Some("/"));
    let set = first.header("set-cookie").unwrap();
    for part in ["tpa_session=tpas_", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = session_cookie(&first);
    let page = app.send("GET", "/", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>Inbox</h1>"));
    // The same browser logs in again: a new session, and the old one is revoked.
    let second = app
        .web_login("alice", PASSWORD, &[("Cookie", &cookie)])
        .await;
    assert_eq!(second.status, 303);
    let cookie2 = session_cookie(&second);
    assert_ne!(cookie, cookie2);
    assert_eq!(
        app.send("GET", "/", &[("Cookie", &cookie)], "")
            .await
            .status,
        303
    );
    assert_eq!(
        app.send("GET", "/", &[("Cookie", &cookie2)], "")
            .await
            .status,
        200
    );
    // A session cookie works for the API, as a session.
    let who = app
        .send("GET", "/api/v1/whoami", &[("Cookie", &cookie2)], "")
        .await;
    assert_eq!(who.json()["via"], "session");
    app.stop().await;
}

#[tokio::test]
async fn cookies_are_secure_with_the_host_prefix_behind_tls() {
    let app = spawn_app_with(|data| {
        data.add_account("alice", PASSWORD, &[]);
        data.edit_config(|t| {
            t.replace(
                "# public_url = \"https://ca.example.com\"",
                "public_url = \"https://ca.example.com\"",
            )
        });
    })
    .await;

    let r = app
        .web_login("alice", PASSWORD, &[("Origin", "https://ca.example.com")])
        .await;

    assert_eq!(r.status, 303, "{}", r.body);
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.starts_with("__Host-tpa_session=tpas_") && set.contains("; Secure"),
        "{set}"
    );
    // The plain name is not read under TLS.
    let plain = session_cookie(&r).replace("__Host-", "");
    assert_eq!(
        app.send("GET", "/", &[("Cookie", &plain)], "").await.status,
        303
    );
    let page = app
        .send("GET", "/", &[("Cookie", &session_cookie(&r))], "")
        .await;
    assert_eq!(page.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn failed_web_login_rerenders_the_form_generically() {
    let app = app().await;

    let wrong = app.web_login("alice", "nope", &[]).await;
    let unknown = app.web_login("nobody", "nope", &[]).await;

    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.body.contains("Unknown username or wrong password."));
    assert_eq!(wrong.body.replace("alice", "nobody"), unknown.body);
    app.stop().await;
}

#[tokio::test]
async fn cross_site_login_posts_are_refused() {
    let app = app().await;

    for headers in [
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", "https://evil.example")],
        vec![("Origin", "null")],
    ] {
        let r = app.web_login("alice", PASSWORD, &headers).await;
        assert_eq!(r.status, 403, "{headers:?}");
        assert_eq!(r.json()["code"], "cross_site");
        assert!(r.header("set-cookie").is_none());
    }
    let same = app
        .web_login("alice", PASSWORD, &[("Sec-Fetch-Site", "same-origin")])
        .await;
    assert_eq!(same.status, 303);
    app.stop().await;
}

#[tokio::test]
async fn logout_needs_the_csrf_token() {
    let app = app().await;
    let cookie = session_cookie(&app.web_login("alice", PASSWORD, &[]).await);
    let form = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];

    let without = app.send("POST", "/logout", &form, "").await;
    let wrong = app.send("POST", "/logout", &form, "csrf_token=wrong").await;
    let api = app
        .send("POST", "/api/v1/logout", &[("Cookie", &cookie)], "")
        .await;

    for r in [&without, &wrong, &api] {
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.json()["code"], "csrf");
    }
    assert_eq!(
        app.send("GET", "/", &[("Cookie", &cookie)], "")
            .await
            .status,
        200,
        "still logged in"
    );
    // The page's own form carries the token.
    let page = app.send("GET", "/", &[("Cookie", &cookie)], "").await;
    let csrf = page
        .body
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let ok = app
        .send("POST", "/logout", &form, &format!("csrf_token={csrf}"))
        .await;
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/login"));
    assert!(ok.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        app.send("GET", "/", &[("Cookie", &cookie)], "")
            .await
            .status,
        303
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_carry_security_headers_and_escape_output() {
    let app = app().await;
    let cookie = session_cookie(&app.web_login("alice", PASSWORD, &[]).await);

    let login = app.get("/login").await;
    let home = app.send("GET", "/", &[("Cookie", &cookie)], "").await;

    for page in [&login, &home] {
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("content-security-policy"),
            Some(
                "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            )
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert!(
            page.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        // No inline style or script: the only script is the static refresh file.
        let inline_script = page
            .body
            .match_indices("<script")
            .any(|(i, _)| !page.body[i..].starts_with("<script src=\"/static/refresh.js\""));
        assert!(
            !page.body.contains("style=") && !inline_script,
            "{}",
            page.body
        );
    }
    assert!(
        home.body
            .contains("Alice &lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{}",
        home.body
    );
    let css = app.get("/static/app.css").await;
    assert_eq!(
        (css.status, css.header("content-type")),
        (200, Some("text/css; charset=utf-8"))
    );
    app.stop().await;
}

#[tokio::test]
async fn pages_redirect_to_login_and_get_changes_nothing() {
    let app = app().await;
    let before = audit_rows(&app.data.open_plain()).len();

    let home = app.get("/").await;
    let logout = app.get("/logout").await;

    assert_eq!(
        (home.status, home.header("location")),
        (303, Some("/login"))
    );
    assert_eq!(logout.status, 405);
    assert_eq!(audit_rows(&app.data.open_plain()).len(), before);
    app.stop().await;
}

#[tokio::test]
async fn password_login_continues_to_a_local_next_only() {
    // Issue 4: a local account confirming a device login comes back to /device.
    let app = app().await;
    let page = app.get("/login?next=/device?code=BCDF-GHJK").await;
    assert!(
        page.body
            .contains("name=\"next\" value=\"&#x2f;device?code=BCDF-GHJK\""),
        "{}",
        page.body
    );
    for (next, expected) in [
        ("%2Fdevice%3Fcode%3DBCDF-GHJK", "/device?code=BCDF-GHJK"),
        ("%2F%2Fevil.example", "/"),
        ("https%3Aevil.example", "/"),
        ("%2F%5Cevil.example", "/"),
    ] {
        let body = format!(
            "username=alice&password={}&next={next}",
            PASSWORD.replace(' ', "+")
        );
        let r = app
            .send(
                "POST",
                "/login",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                &body,
            )
            .await;
        assert_eq!(r.status, 303, "{next}: {}", r.body);
        assert_eq!(r.header("location"), Some(expected), "{next}");
    }
}
