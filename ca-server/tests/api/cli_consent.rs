//! The consent step of `tpa-ssh login` (loopback), issue 4 follow-up: after
//! the browser's user is known (the real npm `oidc-provider`, or a local
//! account's password session), no code goes to the loopback listener until
//! the person approves on the CA's page; denial tells the CLI; the decision
//! needs the session's CSRF token, belongs to the browser session that made
//! it, happens once and expires. A link with someone else's PKCE challenge
//! and port therefore shows the victim what it would authorise instead of
//! logging the link's author in as them.

use serde_json::json;

use crate::helpers::form_encode;
use crate::helpers::sso::{Browser, ca_with_provider, cli_pkce, query_param, spawn_tpa_ssh_login};
use crate::helpers::{
    ConsentPage, Response, TestApp, audit_rows, consent_at, count, decide, hidden, http_send,
    open_consent, post_decision, spawn_app_with,
};

const REDIRECT: &str = "http://127.0.0.1:49999/callback";

fn cli_start(challenge: &str) -> String {
    format!(
        "/cli/login?redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256",
        form_encode(REDIRECT)
    )
}

/// Alice logs in at the provider for a CLI login; the consent page.
async fn alice_consent(browser: &mut Browser, app: &TestApp) -> ConsentPage {
    let (_, challenge) = cli_pkce();
    let back = browser
        .login_at_provider(app, &cli_start(&challenge), "alice")
        .await;
    let signed_in = browser.get(&back).await;
    open_consent(browser, app, &signed_in).await
}

async fn exchange(app: &TestApp, code: &str) -> Response {
    let (verifier, _) = cli_pkce();
    let body =
        json!({"code": code, "code_verifier": verifier, "redirect_uri": REDIRECT}).to_string();
    http_send(
        app.address,
        "POST",
        "/api/v1/cli/token",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await
}

fn actions(app: &TestApp) -> Vec<(String, String, String)> {
    audit_rows(&app.data.open_plain())
        .into_iter()
        .filter(|r| r.action.starts_with("auth.cli."))
        .map(|r| (r.action, r.outcome, r.reason))
        .collect()
}

fn codes(app: &TestApp) -> i64 {
    count(&app.data.open_plain(), "cli_login_codes")
}

#[tokio::test]
async fn consent_page_shows_what_is_authorised_and_approve_sends_the_code() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let mut browser = Browser::default();
    let page = alice_consent(&mut browser, &app).await;
    assert!(page.body.contains("as you (alice)"), "{}", page.body);
    assert!(page.body.contains("port 49999"), "{}", page.body);
    assert!(
        page.body.contains("id=\"consent-source\">127.0.0.1<")
            || page.body.contains("id=\"consent-source\">unknown<"),
        "{}",
        page.body
    );
    assert!(page.body.contains("consent-expires"), "{}", page.body);
    assert_eq!(codes(&app), 0, "nothing for the CLI before the approval");

    let to = decide(&mut browser, &app, &page, "approve").await;
    assert!(to.starts_with(&format!("{REDIRECT}?code=")), "{to}");
    assert_eq!(codes(&app), 1);
    let ok = exchange(&app, &query_param(&to, "code")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["user"]["username"], "alice");
    assert_eq!(
        actions(&app),
        vec![(
            "auth.cli.approve".to_owned(),
            "success".to_owned(),
            "tpa-ssh login approved by the user".to_owned()
        )]
    );

    // Single use: a second decision (either way) changes nothing.
    let again = post_decision(&mut browser, &app, &page.id, Some(&page.csrf), "deny").await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.body.contains("already approved or denied"),
        "{}",
        again.body
    );
    assert_eq!(codes(&app), 1);
}

#[tokio::test]
async fn denied_consent_tells_the_cli_and_makes_no_code() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let mut browser = Browser::default();
    let page = alice_consent(&mut browser, &app).await;
    let to = decide(&mut browser, &app, &page, "deny").await;
    assert_eq!(to, format!("{REDIRECT}?error=access_denied"));
    assert_eq!(codes(&app), 0);
    let later = post_decision(&mut browser, &app, &page.id, Some(&page.csrf), "approve").await;
    assert_eq!(later.status, 409, "{}", later.body);
    assert_eq!(codes(&app), 0, "an approval after a denial makes no code");
    let audited = actions(&app);
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert_eq!(audited[0].0, "auth.cli.deny");
    assert_eq!(audited[0].1, "denied");
    assert_eq!(audited[1].0, "auth.cli.consent");
    assert_eq!(audited[1].2, "cli login consent already decided");
}

#[tokio::test]
async fn consent_needs_this_sessions_csrf_token() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let mut browser = Browser::default();
    let page = alice_consent(&mut browser, &app).await;
    let missing = post_decision(&mut browser, &app, &page.id, None, "approve").await;
    assert_eq!(missing.status, 403, "{}", missing.body);
    assert!(missing.body.contains("csrf"), "{}", missing.body);

    // Another browser's valid CSRF token is not this session's.
    let mut other = Browser::default();
    let theirs = alice_consent(&mut other, &app).await;
    assert_ne!(theirs.csrf, page.csrf);
    let foreign = post_decision(&mut browser, &app, &page.id, Some(&theirs.csrf), "approve").await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);

    // A cross-site form post is refused before anything else.
    let cookie = format!(
        "tpa_session={}",
        browser.cookie(app.address.port(), "tpa_session").unwrap()
    );
    let body = format!(
        "consent={}&decision=approve&csrf_token={}",
        form_encode(&page.id),
        form_encode(&page.csrf)
    );
    let cross = http_send(
        app.address,
        "POST",
        "/cli/consent",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
            ("Origin", "http://evil.example"),
        ],
        &body,
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(cross.body.contains("cross_site"), "{}", cross.body);
    assert_eq!(codes(&app), 0);

    // The consent is still there for its own session.
    let to = decide(&mut browser, &app, &page, "approve").await;
    assert!(to.starts_with(&format!("{REDIRECT}?code=")), "{to}");
}

#[tokio::test]
async fn another_browser_session_cannot_see_or_decide_the_consent() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let mut victim = Browser::default();
    let page = alice_consent(&mut victim, &app).await;

    // Someone else with a web session of their own (even as the same user,
    // in another browser) knows the consent's URL and id.
    for who in ["mallory", "alice"] {
        let mut other = Browser::default();
        let signed_in = other.web_login(&app, "idp", who, "/").await;
        assert_eq!(signed_in.status, 200, "{}", signed_in.body);
        let seen = other
            .get(&format!("http://{}{}", app.address, page.path))
            .await;
        assert_eq!(seen.status, 403, "{who}: {}", seen.body);
        assert!(!seen.body.contains("consent-approve"), "{}", seen.body);
        let csrf = crate::helpers::sso::csrf(&mut other, &app).await;
        let decided = post_decision(&mut other, &app, &page.id, Some(&csrf), "approve").await;
        assert_eq!(decided.status, 403, "{who}: {}", decided.body);
        assert!(
            decided.body.contains("not started in this browser session"),
            "{}",
            decided.body
        );
    }
    // No session at all.
    let anonymous = Browser::default()
        .get(&format!("http://{}{}", app.address, page.path))
        .await;
    assert_eq!(anonymous.status, 403, "{}", anonymous.body);
    assert_eq!(codes(&app), 0);
    let refused: Vec<_> = actions(&app)
        .into_iter()
        .filter(|(action, outcome, reason)| {
            action == "auth.cli.consent"
                && outcome == "denied"
                && reason == "cli login consent bound to another browser session"
        })
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", actions(&app));

    // The victim's own session still decides it.
    let to = decide(&mut victim, &app, &page, "deny").await;
    assert!(to.ends_with("?error=access_denied"), "{to}");
}

#[tokio::test]
async fn expired_consent_is_refused() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let mut browser = Browser::default();
    let page = alice_consent(&mut browser, &app).await;
    let changed = app.data.open_plain().exec(
        "UPDATE cli_consents SET expires_at = '2000-01-01T00:00:00.000000Z'",
        &[],
    );
    assert_eq!(changed, 1);
    let seen = browser
        .get(&format!("http://{}{}", app.address, page.path))
        .await;
    assert_eq!(seen.status, 409, "{}", seen.body);
    assert!(seen.body.contains("expired"), "{}", seen.body);
    let decided = post_decision(&mut browser, &app, &page.id, Some(&page.csrf), "approve").await;
    assert_eq!(decided.status, 409, "{}", decided.body);
    assert_eq!(codes(&app), 0);
    assert_eq!(
        actions(&app),
        vec![(
            "auth.cli.consent".to_owned(),
            "denied".to_owned(),
            "cli login consent expired".to_owned()
        )]
    );
}

/// `%XX` → the byte, for one query value.
fn percent_decode(text: &str) -> String {
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' && tail.len() >= 2 {
            let hex = std::str::from_utf8(&tail[..2]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A CA with local accounts only: `/cli/login` sends the browser to the
/// password form, which comes back with a web session, straight to consent.
#[tokio::test]
async fn password_session_goes_through_the_consent_step() {
    let app =
        spawn_app_with(|data| data.add_account("dora", "correct horse battery", &["ops"])).await;
    let (_, challenge) = cli_pkce();
    let start = cli_start(&challenge);
    let mut browser = Browser::default();
    let r = browser.get(&format!("http://{}{start}", app.address)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to_login = r.header("location").unwrap().to_owned();
    let next = percent_decode(
        to_login
            .strip_prefix("/login?next=")
            .unwrap_or_else(|| panic!("{to_login}")),
    );
    assert!(next.starts_with("/cli/login?redirect_uri="), "{next}");
    assert!(next.contains(&challenge), "{next}");
    let logged_in = browser
        .post_form(
            &format!("http://{}/login", app.address),
            &[
                ("username", "dora"),
                ("password", "correct horse battery"),
                ("next", &next),
            ],
        )
        .await;
    assert_eq!(logged_in.status, 303, "{}", logged_in.body);
    assert_eq!(logged_in.header("location").unwrap(), next);
    let r = browser.get(&format!("http://{}{next}", app.address)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let path = r.header("location").unwrap().to_owned();
    let page = consent_at(&mut browser, &app, &path).await;
    assert!(page.body.contains("as you (dora)"), "{}", page.body);
    assert_eq!(codes(&app), 0);
    let to = decide(&mut browser, &app, &page, "approve").await;
    let ok = exchange(&app, &query_param(&to, "code")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["user"]["username"], "dora");
}

/// The real `tpa-ssh login`: a denial in the browser ends it with a clear message.
#[tokio::test]
async fn tpa_ssh_login_denied_in_the_browser_says_so() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let (child, url, home, stderr) = spawn_tpa_ssh_login(&app).await;
    let mut browser = Browser::default();
    let back = browser.login_at_provider(&app, &url, "alice").await;
    let signed_in = browser.get(&back).await;
    let page = open_consent(&mut browser, &app, &signed_in).await;
    let loopback = decide(&mut browser, &app, &page, "deny").await;
    let landed = browser.get(&loopback).await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    assert!(landed.body.contains("You denied"), "{}", landed.body);
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    let stderr = tokio::time::timeout(std::time::Duration::from_secs(5), stderr)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stderr.contains("the login was denied in the browser"),
        "{stderr}"
    );
    assert!(!home.path().join(".config/tpa/session.json").exists());
    assert_eq!(codes(&app), 0);
}

/// Security review 2026-11-24: a logged-in browser opening `/cli/login`
/// again and again holds a consent row each time; these count against the
/// address's login starts (30 in 5 minutes) like every other login start,
/// so one person cannot fill the global cap and stop everyone's
/// `tpa-ssh login`.
#[tokio::test]
async fn consents_from_an_existing_session_are_limited_per_address() {
    let app =
        spawn_app_with(|data| data.add_account("dora", "correct horse battery", &["ops"])).await;
    let mut browser = Browser::default();
    let logged_in = browser
        .post_form(
            &format!("http://{}/login", app.address),
            &[("username", "dora"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(logged_in.status, 303, "{}", logged_in.body);
    let (_, challenge) = cli_pkce();
    let url = format!("http://{}{}", app.address, cli_start(&challenge));
    for i in 0..30 {
        let r = browser.get(&url).await;
        assert_eq!(r.status, 303, "{i}: {}", r.body);
        assert!(r.header("location").unwrap().starts_with("/cli/consent/"));
    }
    let r = browser.get(&url).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert_eq!(count(&app.data.open_plain(), "cli_consents"), 30);
}

/// Security review 2026-11-24: refused consent decisions are audited, so
/// they count per person and address (5 and 20 in 5 minutes, like wrong
/// device codes); past that the CA answers 429 without reading or writing,
/// and one logged-in person cannot fill the audit trail.
#[tokio::test]
async fn refused_consent_decisions_are_limited() {
    let app =
        spawn_app_with(|data| data.add_account("dora", "correct horse battery", &["ops"])).await;
    let mut browser = Browser::default();
    let logged_in = browser
        .post_form(
            &format!("http://{}/login", app.address),
            &[("username", "dora"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(logged_in.status, 303, "{}", logged_in.body);
    let form = browser.get(&format!("http://{}/device", app.address)).await;
    let csrf = hidden(&form.body, "csrf_token");
    let url = format!("http://{}/cli/consent", app.address);
    let refusals = |app: &TestApp| {
        audit_rows(&app.data.open_plain())
            .into_iter()
            .filter(|r| r.action == "auth.cli.consent")
            .count()
    };
    for i in 0..5 {
        let r = browser
            .post_form(
                &url,
                &[
                    ("csrf_token", &csrf),
                    ("consent", &format!("forged-{i}")),
                    ("decision", "approve"),
                ],
            )
            .await;
        assert_eq!(r.status, 403, "{i}: {}", r.body);
    }
    assert_eq!(refusals(&app), 5);
    for _ in 0..5 {
        let r = browser
            .post_form(
                &url,
                &[
                    ("csrf_token", &csrf),
                    ("consent", "forged"),
                    ("decision", "approve"),
                ],
            )
            .await;
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(refusals(&app), 5, "a flood writes nothing more");
}

/// Issue 18, finding 3: mallory, a local user who saw the victim's
/// `/cli/login?…code_challenge=…` URL, opens it in his own session,
/// approves, and his browser sends the code to the victim's listener; the
/// victim's CLI is then logged in as mallory. The CA cannot tell the two
/// apart, so the person must: the consent page shows the phrase derived
/// from the challenge, which the victim's terminal prints too, with
/// "continue only if it matches your terminal", and the CLI names the
/// account it is now logged in as in a way that cannot be missed, with a
/// pointer to `tpa-ssh whoami` and `tpa-ssh logout`.
#[tokio::test]
async fn a_loopback_login_approved_by_someone_else_names_their_account_loudly() {
    let (_provider, app) = ca_with_provider(json!({}), false).await;
    let (child, url, _home, stderr) = spawn_tpa_ssh_login(&app).await;
    let phrase = tpa_core::login_phrase(&query_param(&url, "code_challenge"));

    let mut mallory = Browser::default();
    let back = mallory.login_at_provider(&app, &url, "mallory").await;
    let signed_in = mallory.get(&back).await;
    let consent = open_consent(&mut mallory, &app, &signed_in).await;
    assert!(
        consent
            .body
            .contains(&format!("id=\"consent-phrase\">{phrase}<")),
        "{}",
        consent.body
    );
    assert!(
        consent
            .body
            .contains("continue only if it matches your terminal"),
        "{}",
        consent.body
    );
    let loopback = decide(&mut mallory, &app, &consent, "approve").await;
    let landed = mallory.get(&loopback).await;
    assert_eq!(landed.status, 200, "{}", landed.body);

    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let banner: Vec<&str> = stdout.lines().take(3).collect();
    assert!(banner[0].starts_with("====="), "{stdout}");
    // The test provider gives mallory the username "alice": the banner
    // names the identity (issuer#subject), which is what tells them apart.
    assert!(
        banner[1].trim().starts_with("LOGGED IN AS: ")
            && banner[1].trim().ends_with("#mallory-sub-2)"),
        "{stdout}"
    );
    assert!(banner[2].starts_with("====="), "{stdout}");
    assert!(
        stdout.contains("If this is not YOUR account, run `tpa-ssh logout` now"),
        "{stdout}"
    );
    assert!(stdout.contains("`tpa-ssh whoami`"), "{stdout}");
    let printed = stderr.await.unwrap();
    assert!(
        printed.contains(&format!("Confirmation phrase: {phrase}")),
        "the terminal shows the same phrase: {printed}"
    );
    assert!(
        printed.contains("Continue only if the CA's page shows this same phrase"),
        "{printed}"
    );
}
