//! Device logins (`tpa-ssh login --no-browser`) against the real npm
//! `oidc-provider`: the real CLI shows a URL and a code, a person logs in to
//! the CA through the provider, confirms the code and approves; and the
//! refusals: polling too fast, wrong codes (rate-limited), denial, expiry,
//! reuse, and a decision without the CSRF token. Issue 4.

use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

use crate::helpers::form_encode;
use crate::helpers::sso::{Browser, ca_with_provider, continue_to};
use crate::helpers::{TestApp, audit_rows, http_send, http_send_from};

/// The CSRF token of a page's form.
fn form_csrf(body: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = body.find(marker).expect("a CSRF field") + marker.len();
    let end = start + body[start..].find('"').unwrap();
    body[start..end].to_owned()
}

/// Logs `who` in through the provider, arriving at `/device?code=CODE` (a
/// link that carries a code); returns the code form's page, which must not
/// have the code filled in (issue 18): the person types it.
async fn log_in_at_device_page(
    browser: &mut Browser,
    app: &TestApp,
    who: &str,
    code: &str,
) -> String {
    let start = browser
        .get(&format!("http://{}/device?code={code}", app.address))
        .await;
    assert_eq!(start.status, 303, "{}", start.body);
    let to_login = start.header("location").unwrap().to_owned();
    // The login page comes back to the bare form: the code is not kept.
    let next = "/device";
    assert_eq!(
        to_login,
        format!("/login?next={}", form_encode(next).replace("%2F", "/"))
    );
    let done = browser.web_login(app, "idp", who, &form_encode(next)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(continue_to(&done), next);
    let form = browser.get(&format!("http://{}{next}", app.address)).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("id=\"user_code\""), "{}", form.body);
    assert!(!form.body.contains(code), "never prefilled: {}", form.body);
    form.body
}

async fn api(app: &TestApp, path: &str, body: &str) -> crate::helpers::Response {
    http_send(
        app.address,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body,
    )
    .await
}

async fn poll(app: &TestApp, device_code: &str) -> crate::helpers::Response {
    api(
        app,
        "/api/v1/cli/device/token",
        &json!({ "device_code": device_code }).to_string(),
    )
    .await
}

/// Starts a device login through the API: (device code, user code).
async fn start(app: &TestApp) -> (String, String) {
    let r = api(app, "/api/v1/cli/device", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["verification_path"], "/device");
    assert_eq!(v["interval"], 5);
    assert_eq!(v["expires_in"], 600);
    (
        v["device_code"].as_str().unwrap().to_owned(),
        v["user_code"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn tpa_ssh_headless_login_confirmed_in_a_browser_through_the_provider() {
    let (provider, app) = ca_with_provider(json!({}), false).await;
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("tpa-ssh");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .args([
            "login",
            "--ca",
            &format!("http://{}", app.address),
            "--no-browser",
        ])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (page, code) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut page = None;
        let mut after_enter = false;
        while let Some(line) = stderr.next_line().await.unwrap() {
            let line = line.trim().to_owned();
            if after_enter {
                return (page.expect("the page comes first"), line);
            }
            if line.starts_with("http://") && page.is_none() {
                page = Some(line);
            } else if line.contains("type this code") {
                after_enter = true;
            }
        }
        panic!("tpa-ssh printed no code");
    })
    .await
    .unwrap();
    assert_eq!(page, format!("http://{}/device", app.address));
    // issue 18: nothing the CLI prints is a link that carries the code.
    assert!(!page.contains('?'), "{page}");
    assert_eq!(code.len(), 9, "{code}");
    assert!(
        code.chars()
            .all(|c| c == '-' || "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
        "{code}"
    );

    // Any browser: log in through the provider, enter the code, approve.
    let mut browser = Browser::default();
    let form = log_in_at_device_page(&mut browser, &app, "alice", &code).await;
    let csrf = form_csrf(&form);
    let confirm = browser
        .post_form(
            &format!("http://{}/device", app.address),
            &[("csrf_token", &csrf), ("user_code", &code.to_lowercase())],
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains(&code), "{}", confirm.body);
    assert!(
        confirm.body.contains("127.0.0.1"),
        "the requesting address: {}",
        confirm.body
    );
    assert!(
        confirm.body.contains("id=\"device-approve\""),
        "{}",
        confirm.body
    );
    let approved = browser
        .post_form(
            &format!("http://{}/device/decision", app.address),
            &[
                ("csrf_token", &csrf),
                ("user_code", &code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert!(approved.body.contains("Approved"), "{}", approved.body);

    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("tpa-ssh stops polling once approved")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Logged in"));
    let path = home.path().join(".config/tpa/session.json");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let session: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
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
    let me = me.json();
    assert_eq!(me["user"]["identity"]["issuer"], provider.issuer());
    assert_eq!(me["user"]["identity"]["subject"], "alice-sub-1");
    assert_eq!(me["user"]["groups"], json!(["engineers", "sre-leads"]));
    // Issue 12: the provider's `name` claim is kept with the device login's token.
    assert_eq!(me["user"]["display_name"], "Alice A");
    assert_eq!(me["via"], "api_token");
    // issue 18: marked as a device login, with the shorter default lifetime.
    assert_eq!(me["device_login"], true, "{me}");

    let actions: Vec<(String, String, String)> = audit_rows(&app.data.open_plain())
        .into_iter()
        .map(|r| (r.action, r.outcome, r.reason))
        .collect();
    for action in ["auth.device.start", "auth.device.approve"] {
        assert!(
            actions
                .iter()
                .any(|(a, o, _)| a == action && o == "success"),
            "{action}: {actions:?}"
        );
    }
    assert!(
        actions
            .iter()
            .any(|(a, _, r)| a == "auth.login" && r.contains("device login")),
        "{actions:?}"
    );
    // Codes are stored hashed only.
    let plain = app.data.open_plain();
    let stored: String = plain.one(
        "SELECT device_hash || user_code_hash FROM device_logins",
        &[],
    );
    assert!(!stored.contains(&code.replace('-', "")));
}

#[tokio::test]
async fn device_login_refusals() {
    let (provider, app) = ca_with_provider(json!({}), false).await;
    let (device, code) = start(&app).await;
    assert!(device.len() >= 43, "a high-entropy device code");

    // Polling: pending, then too fast.
    let r = poll(&app, &device).await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("authorization_pending")),
        "{}",
        r.body
    );
    let r = poll(&app, &device).await;
    assert_eq!(r.json()["code"], "slow_down", "{}", r.body);
    assert_eq!(
        poll(&app, "not-a-device-code").await.json()["code"],
        "invalid_grant"
    );

    // Wrong codes are rate-limited per person: after five, even the right one waits.
    let mut alice = Browser::default();
    let form = log_in_at_device_page(&mut alice, &app, "alice", &code).await;
    let csrf = form_csrf(&form);
    let url = format!("http://{}/device", app.address);
    for wrong in ["BBBB-BBBB", "AAAA-AAAA", "", "BCDF", "ZZZZ-ZZZZ"] {
        let r = alice
            .post_form(&url, &[("csrf_token", &csrf), ("user_code", wrong)])
            .await;
        assert_eq!(r.status, 400, "{wrong}: {}", r.body);
        assert!(r.body.contains("not valid"), "{}", r.body);
    }
    let r = alice
        .post_form(&url, &[("csrf_token", &csrf), ("user_code", &code)])
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));

    // Without the CSRF token nothing is decided.
    let mut mallory = Browser::default();
    let form = log_in_at_device_page(&mut mallory, &app, "mallory", &code).await;
    let csrf = form_csrf(&form);
    let decision = format!("http://{}/device/decision", app.address);
    let r = mallory
        .post_form(&decision, &[("user_code", &code), ("decision", "approve")])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        poll_after_interval(&app, &device).await,
        "authorization_pending"
    );

    // Denied: the CLI hears access_denied, and the code cannot be used again.
    let r = mallory
        .post_form(
            &decision,
            &[
                ("csrf_token", &csrf),
                ("user_code", &code),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Denied"), "{}", r.body);
    assert_eq!(poll(&app, &device).await.json()["code"], "access_denied");
    let r = mallory
        .post_form(&url, &[("csrf_token", &csrf), ("user_code", &code)])
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    // Expired: nobody confirmed it in time.
    let (late, late_code) = start(&app).await;
    app.data
        .open_plain()
        .exec("UPDATE device_logins SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE status = 'pending'", &[]);
    assert_eq!(poll(&app, &late).await.json()["code"], "expired_token");
    let r = mallory
        .post_form(&url, &[("csrf_token", &csrf), ("user_code", &late_code)])
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    // Approved: one token, for the person who approved, and only once.
    let (once, once_code) = start(&app).await;
    let r = mallory
        .post_form(
            &decision,
            &[
                ("csrf_token", &csrf),
                ("user_code", &once_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = poll(&app, &once).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["identity"]["subject"], "mallory-sub-2");
    assert_eq!(r.json()["user"]["identity"]["issuer"], provider.issuer());
    assert_eq!(poll(&app, &once).await.json()["code"], "invalid_grant");

    let audit = audit_rows(&app.data.open_plain());
    for (action, outcome) in [
        ("auth.device.start", "success"),
        ("auth.device.deny", "denied"),
        ("auth.device.expire", "denied"),
        ("auth.device.approve", "success"),
    ] {
        assert!(
            audit
                .iter()
                .any(|r| r.action == action && r.outcome == outcome),
            "{action} {outcome}"
        );
    }
}

/// Polls once the interval has passed; returns the answer's code.
async fn poll_after_interval(app: &TestApp, device: &str) -> String {
    app.data
        .open_plain()
        .exec("UPDATE device_logins SET last_poll_at = NULL", &[]);
    poll(app, device).await.json()["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn starting_logins_is_limited_per_address() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    for i in 0..30 {
        let r = if i % 2 == 0 {
            api(&app, "/api/v1/cli/device", "").await
        } else {
            app.get("/login/oidc/idp?next=/").await
        };
        assert!(matches!(r.status, 200 | 303), "{i}: {}", r.body);
    }
    let r = api(&app, "/api/v1/cli/device", "").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["code"], "rate_limited");
    let r = app.get("/login/oidc/idp?next=/").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    // One audit row for the whole flood, not one per refusal.
    let limited = audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|r| r.reason.starts_with("too many logins started"))
        .count();
    assert_eq!(limited, 1);
}

#[tokio::test]
async fn failed_callbacks_are_limited_per_address() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    for i in 0..20 {
        let r = app
            .get(&format!("/oidc/callback?state=forged-{i}&code=x"))
            .await;
        assert_eq!(r.status, 400, "{i}: {}", r.body);
    }
    let r = app.get("/oidc/callback?state=forged&code=x").await;
    assert_eq!(r.status, 429, "{}", r.body);
    let denied = audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|r| r.action == "auth.login" && r.outcome == "denied")
        .count();
    assert_eq!(denied, 21, "20 refusals and one note of the limit");
    for _ in 0..5 {
        assert_eq!(
            app.get("/oidc/callback?state=forged&code=x").await.status,
            429
        );
    }
    let after = audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|r| r.action == "auth.login" && r.outcome == "denied")
        .count();
    assert_eq!(after, 21, "a flood writes nothing more");
}

/// Security review 2026-11-24: an API token must not approve a device login.
/// If it could, every token would mint its own successor (fresh lifetime,
/// same groups) before it expires, and `auth.api_token_ttl` would bound
/// nothing. Only a browser session confirms a code.
#[tokio::test]
async fn an_api_token_cannot_approve_a_device_login() {
    let app = crate::helpers::spawn_app_with(|data| {
        data.add_account("dora", "correct horse battery", &["ops"]);
    })
    .await;
    let login = api(
        &app,
        "/api/v1/login",
        &json!({ "username": "dora", "password": "correct horse battery" }).to_string(),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let (device, code) = start(&app).await;
    for (path, body) in [
        ("/device", format!("user_code={code}")),
        (
            "/device/decision",
            format!("user_code={code}&decision=approve"),
        ),
    ] {
        let r = http_send(
            app.address,
            "POST",
            path,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &body,
        )
        .await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("browser session"), "{}", r.body);
    }
    assert_eq!(
        poll_after_interval(&app, &device).await,
        "authorization_pending",
        "nothing was approved"
    );
    assert!(
        !audit_rows(&app.data.open_plain())
            .iter()
            .any(|r| r.action == "auth.device.approve"),
        "no approval recorded"
    );
}

/// Security review 2026-11-24: a person who reaches the wrong-code limit
/// (someone may be guessing user codes) is audited once per window, with
/// their identity; further refusals in the window write nothing.
#[tokio::test]
async fn reaching_the_wrong_code_limit_is_audited_once() {
    let app = crate::helpers::spawn_app_with(|data| {
        data.add_account("dora", "correct horse battery", &["ops"]);
    })
    .await;
    let mut dora = Browser::default();
    let logged_in = dora
        .post_form(
            &format!("http://{}/login", app.address),
            &[("username", "dora"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(logged_in.status, 303, "{}", logged_in.body);
    let url = format!("http://{}/device", app.address);
    let form = dora.get(&url).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form_csrf(&form.body);
    for i in 0..5 {
        let r = dora
            .post_form(&url, &[("csrf_token", &csrf), ("user_code", "BBBB-BBBB")])
            .await;
        assert_eq!(r.status, 400, "{i}: {}", r.body);
    }
    for _ in 0..3 {
        let r = dora
            .post_form(&url, &[("csrf_token", &csrf), ("user_code", "BBBB-BBBB")])
            .await;
        assert_eq!(r.status, 429, "{}", r.body);
    }
    let limited: Vec<_> = audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|r| r.action == "auth.device.code")
        .collect();
    assert_eq!(limited.len(), 1, "one row for the whole window");
    assert_eq!(limited[0].outcome, "denied");
    assert!(limited[0].actor.ends_with("#dora"), "{}", limited[0].actor);
}

/// Security review 2026-11-24: every poll is a database write, so a client
/// that ignores the interval must not hammer the writer: its `slow_down`
/// answers count as failures of its address, and past 20 in 5 minutes it
/// gets `429` before any database work.
#[tokio::test]
async fn polling_too_fast_is_limited_per_address() {
    let app = crate::helpers::spawn_app().await;
    let (device, _code) = start(&app).await;
    assert_eq!(
        poll(&app, &device).await.json()["code"],
        "authorization_pending"
    );
    for i in 0..20 {
        let r = poll(&app, &device).await;
        assert_eq!(r.json()["code"], "slow_down", "{i}: {}", r.body);
    }
    let r = poll(&app, &device).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["code"], "rate_limited");
}

/// A local-account CA and dora's browser, logged in to its pages.
async fn dora_logged_in(config: &str) -> (TestApp, Browser) {
    let config = config.to_owned();
    let app = crate::helpers::spawn_app_with(|data| {
        data.add_account("dora", "correct horse battery", &["ops"]);
        if !config.is_empty() {
            data.edit_config(|text| {
                let line = "device_token_ttl = \"1h\"\n";
                assert!(text.contains(line), "{text}");
                text.replace(line, &config)
            });
        }
    })
    .await;
    let mut dora = Browser::default();
    let logged_in = dora
        .post_form(
            &format!("http://{}/login", app.address),
            &[("username", "dora"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(logged_in.status, 303, "{}", logged_in.body);
    (app, dora)
}

/// Issue 18, finding 1: an attacker starts a device login and sends the
/// victim `/device?code=CODE`. Before, the victim saw the code filled in
/// and approved in two clicks (Continue, Approve). Now the form is empty,
/// says the link carried a code, and Continue as the page stands confirms
/// nothing: the attacker's poll stays pending.
#[tokio::test]
async fn a_phishing_link_with_a_code_cannot_be_approved_in_two_clicks() {
    let (app, mut victim) = dora_logged_in("").await;
    let (attacker_device, code) = start(&app).await;
    let link = victim
        .get(&format!("http://{}/device?code={code}", app.address))
        .await;
    assert_eq!(link.status, 200, "{}", link.body);
    assert!(!link.body.contains(&code), "prefilled: {}", link.body);
    assert!(
        !link.body.contains(&code.replace('-', "")),
        "prefilled: {}",
        link.body
    );
    assert!(
        link.body.contains("id=\"device-link-code\""),
        "{}",
        link.body
    );
    assert!(link.body.contains("never filled in"), "{}", link.body);

    // Click 1: Continue, submitting the form exactly as the page built it.
    let csrf = form_csrf(&link.body);
    let url = format!("http://{}/device", app.address);
    let r = victim
        .post_form(&url, &[("csrf_token", &csrf), ("user_code", "")])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.contains("device-approve"), "{}", r.body);
    assert_eq!(
        poll_after_interval(&app, &attacker_device).await,
        "authorization_pending",
        "the attacker got nothing"
    );
    assert!(
        !audit_rows(&app.data.open_plain())
            .iter()
            .any(|r| r.action == "auth.device.approve")
    );
}

/// Issue 18: a typed code reaches a confirmation page that says what is
/// authorised ("a command-line login for YOUR account, started from
/// ADDRESS at TIME") and "If someone sent you this link or code, deny";
/// approving gives a token marked as a device login in `whoami` and the
/// audit trail, with the shorter `auth.device_token_ttl` (configurable).
#[tokio::test]
async fn a_typed_code_works_and_its_token_is_a_short_marked_device_token() {
    let (app, mut dora) = dora_logged_in("device_token_ttl = \"20m\"\n").await;
    let (device, code) = start(&app).await;
    let form = dora.get(&format!("http://{}/device", app.address)).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(!form.body.contains("device-link-code"), "{}", form.body);
    let csrf = form_csrf(&form.body);
    let confirm = dora
        .post_form(
            &format!("http://{}/device", app.address),
            &[("csrf_token", &csrf), ("user_code", &code)],
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let body = &confirm.body;
    assert!(
        body.contains("a command-line login for YOUR account (dora)"),
        "{body}"
    );
    assert!(
        body.contains("started from <strong id=\"device-started\">127.0.0.1 at 20"),
        "{body}"
    );
    assert!(
        body.contains("If someone sent you this link or code, deny."),
        "{body}"
    );
    assert!(!body.contains("device-mismatch"), "same address: {body}");
    let approved = dora
        .post_form(
            &format!("http://{}/device/decision", app.address),
            &[
                ("csrf_token", &csrf),
                ("user_code", &code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let r = poll(&app, &device).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let expires = chrono::DateTime::parse_from_rfc3339(r.json()["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let left = expires - chrono::Utc::now();
    assert!(
        left <= chrono::TimeDelta::minutes(20) && left > chrono::TimeDelta::minutes(15),
        "device_token_ttl, not api_token_ttl: {left}"
    );
    let me = http_send(
        app.address,
        "GET",
        "/api/v1/whoami",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["device_login"], true, "{}", me.body);
    let login = audit_rows(&app.data.open_plain())
        .into_iter()
        .find(|r| r.action == "auth.login" && r.reason.contains("device login"))
        .expect("the token's auth.login");
    let details: serde_json::Value = serde_json::from_str(&login.details).unwrap();
    assert_eq!(details["device_login"], true, "{details}");

    // A password login's token is not marked.
    let pw = api(
        &app,
        "/api/v1/login",
        &json!({ "username": "dora", "password": "correct horse battery" }).to_string(),
    )
    .await;
    let pw_token = pw.json()["token"].as_str().unwrap().to_owned();
    let me = http_send(
        app.address,
        "GET",
        "/api/v1/whoami",
        &[("Authorization", &format!("Bearer {pw_token}"))],
        "",
    )
    .await;
    assert_eq!(me.json()["device_login"], false, "{}", me.body);
}

/// Issue 18: when the login was started from another address than the
/// browser's, the confirmation page says so prominently. The login starts
/// from 127.0.0.2 (a real second client address), the browser is 127.0.0.1.
#[tokio::test]
async fn a_login_started_from_another_address_is_flagged_on_the_page() {
    let (app, mut dora) = dora_logged_in("").await;
    let started = http_send_from(
        Some("127.0.0.2".parse().unwrap()),
        app.address,
        "POST",
        "/api/v1/cli/device",
        &[("Content-Type", "application/json")],
        "",
    )
    .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let code = started.json()["user_code"].as_str().unwrap().to_owned();
    let form = dora.get(&format!("http://{}/device", app.address)).await;
    let csrf = form_csrf(&form.body);
    let confirm = dora
        .post_form(
            &format!("http://{}/device", app.address),
            &[("csrf_token", &csrf), ("user_code", &code)],
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let body = &confirm.body;
    let warning = body
        .split("id=\"device-mismatch\"")
        .nth(1)
        .expect("the mismatch warning")
        .split("</p>")
        .next()
        .unwrap();
    assert!(warning.contains("role=\"alert\""), "{warning}");
    assert!(
        warning.contains("started from 127.0.0.2, but your browser is at 127.0.0.1"),
        "{warning}"
    );
}
