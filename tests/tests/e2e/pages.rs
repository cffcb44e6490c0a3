//! Every web page fits its content in headless Chromium at a desktop width
//! (1280 px) and a phone width (390 px): no horizontal overflow
//! (`document.documentElement.scrollWidth <= innerWidth`), with a screenshot
//! of each page saved for people to look at (`TPA_SCREENSHOT_DIR`, else a
//! kept temporary directory whose path is printed). Also the emergency
//! (break-glass) option of the new-request form, end to end. Issue 12.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::harness::{Browser, INSTALL_HINT, alice_requests_hotfix, demo_ca, http};
use crate::harness::{CaDir, UserKey, require};

const PASSWORD: &str = "browser test password";
const BASTION_TOKEN: &str = "tpab_pages-test-bastion-token-0123456789";

/// The directory screenshots go to (kept after the test).
fn screenshot_dir() -> PathBuf {
    let dir = match std::env::var_os("TPA_SCREENSHOT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => tempfile::Builder::new()
            .prefix("tpa-screenshots-")
            .tempdir()
            .unwrap()
            .keep(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("screenshots: {}", dir.display());
    dir
}

/// A demo-like CA with a bastion allowed to post session records.
fn ca_with_bastion(parent: &Path) -> CaDir {
    let ca = demo_ca(parent, PASSWORD);
    let hash = hex::encode(Sha256::digest(BASTION_TOKEN.as_bytes()));
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        "\n[[bastions]]\nname = \"bastion-1\"\ntoken_hash = \"{hash}\"\n"
    ));
    std::fs::write(&ca.config, config).unwrap();
    ca
}

fn api_token(ca: std::net::SocketAddr, user: &str) -> String {
    let login = json!({ "username": user, "password": PASSWORD }).to_string();
    let (status, body) = http(
        ca,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &login,
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn post(ca: std::net::SocketAddr, token: &str, path: &str, body: &str) -> Value {
    let bearer = format!("Bearer {token}");
    let (status, reply) = http(
        ca,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        body,
    );
    assert_eq!(status, 200, "{path}: {reply}");
    serde_json::from_str(&reply).unwrap()
}

/// An approved hotfix request with a certificate and one bastion session
/// (so that the timeline's sessions table has a row); returns its id.
fn granted_with_a_session(ca: std::net::SocketAddr, dir: &Path) -> String {
    let id = alice_requests_hotfix(ca, PASSWORD);
    for approver in ["bob", "carol"] {
        let token = api_token(ca, approver);
        post(ca, &token, &format!("/api/v1/requests/{id}/approve"), "");
    }
    let key = UserKey::generate(dir, "alice-key");
    let public = std::fs::read_to_string(&key.public).unwrap();
    let alice = api_token(ca, "alice");
    let cert = post(
        ca,
        &alice,
        &format!("/api/v1/requests/{id}/certificate"),
        &json!({ "public_key": public.trim() }).to_string(),
    );
    let serial = cert["serial"].as_str().unwrap().to_owned();
    let record = json!({ "records": [{
        "session_id": "ses_0123456789abcdef0123456789abcdef",
        "serial": serial,
        "key_id": format!("tpa:request={id}:user=alice"),
        "request": id,
        "login": "root",
        "requester": "alice",
        "source": "127.0.0.1:50000",
        "target": "web-1",
        "target_address": "127.0.0.1:2222",
        "started_at": "2026-11-24T09:00:00.000000Z",
        "ended_at": "2026-11-24T09:01:00.000000Z",
        "bytes_to_target": 1200,
        "bytes_from_target": 3400,
        "end": "client_closed",
    }]});
    post(ca, BASTION_TOKEN, "/api/v1/sessions", &record.to_string());
    id
}

/// A second, pending hotfix request of alice's (another host than
/// [`alice_requests_hotfix`]'s, so it is not the same request again).
fn alice_requests_web_2(ca: std::net::SocketAddr) -> String {
    let token = api_token(ca, "alice");
    let body = json!({
        "role": "hotfix-admin",
        "hosts": ["web-2"],
        "duration": "2h",
        "reason": "INC-4413 a rather long reason that explains at length why web-2 needs a hotfix now, to test that long text wraps",
        "ticket": "INC-4413",
    });
    let bearer = format!("Bearer {token}");
    let (status, reply) = http(
        ca,
        "POST",
        "/api/v1/requests",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        &body.to_string(),
    );
    assert_eq!(status, 201, "{reply}");
    serde_json::from_str::<Value>(&reply).unwrap()["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Checks the page now shown: it has loaded (`main h1`), nothing sticks out
/// sideways, and its screenshot is saved as `<width>-<name>.png`.
fn fits(browser: &Browser, dir: &Path, width: u32, name: &str) {
    browser.wait_for("main h1");
    let sizes = browser.execute(
        "return [document.documentElement.scrollWidth, window.innerWidth, document.body.scrollHeight];",
    );
    let scroll_width = sizes[0].as_u64().unwrap();
    let inner_width = sizes[1].as_u64().unwrap();
    browser.screenshot(&dir.join(format!("{width}-{name}.png")));
    assert!(
        inner_width <= u64::from(width) && inner_width + 40 >= u64::from(width),
        "{name}: the viewport is {inner_width} px wide, not about {width}"
    );
    if scroll_width > inner_width {
        // Name the culprits: elements whose right edge is past the viewport.
        let wide = browser.execute(
            "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 8).map(e => e.tagName + '.' + e.className + '#' + e.id + ' right=' + Math.round(e.getBoundingClientRect().right));",
        );
        panic!(
            "{name} at {width} px overflows sideways: scrollWidth {scroll_width} > innerWidth {inner_width} ({}); past the edge: {wide}",
            browser.url()
        );
    }
}

// issue 12: every page fits at 1280 and 390 px; screenshots for people.
#[test]
fn every_page_fits_at_desktop_and_phone_widths() {
    let chromium: PathBuf = require("chromium", INSTALL_HINT);
    let chromedriver: PathBuf = require("chromedriver", INSTALL_HINT);
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca_with_bastion(tmp.path());
    let running = ca.serve();
    let granted = granted_with_a_session(running.addr, tmp.path());
    let pending = alice_requests_web_2(running.addr);
    let shots = screenshot_dir();
    let browser = Browser::start(
        &chromium,
        &chromedriver,
        &format!("http://{}", running.addr),
    );

    for (width, height) in [(1280, 1000), (390, 1100)] {
        browser.set_window(width, height);
        let check = |name: &str| fits(&browser, &shots, width, name);

        browser.goto("/login");
        browser.wait_for("#username");
        check("login");

        // alice, a requester.
        browser.log_in("alice", PASSWORD);
        check("inbox-requester");
        for (path, name) in [
            ("/my", "my-requests"),
            ("/history", "history"),
            ("/reviews", "reviews"),
            ("/requests/new", "new-request"),
        ] {
            browser.goto(path);
            browser.wait_for_url(path);
            check(name);
        }
        // The long role descriptions do not stretch the form.
        let form = browser.execute(
            "const f = document.querySelector('form.request-form').getBoundingClientRect(); return f.right;",
        );
        assert!(
            form.as_f64().unwrap() <= f64::from(width),
            "the form ends at {form} px"
        );
        // An emergency without an incident id: the form again, with the error.
        browser.type_into("#hosts", "web-1");
        browser.type_into("#reason", "INC-4414 a test of the form");
        browser.click("#break_glass");
        browser.click("#submit");
        browser.wait_for_text("#error", "incident id");
        check("new-request-error");
        browser.goto(&format!("/requests/{pending}"));
        browser.wait_for_text("#state", "pending");
        check("request-pending");
        browser.goto(&format!("/requests/{granted}"));
        browser.wait_for_text("#state", "approved");
        check("request-approved");
        // The pages of `tpa-ssh login`: the device code form and the
        // loopback login's consent page (a web session goes straight there).
        browser.goto("/device");
        browser.wait_for("#user_code");
        check("device");
        browser.goto(
            "/cli/login?redirect_uri=http%3A%2F%2F127.0.0.1%3A49999%2Fcallback\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        );
        browser.wait_for_url("/cli/consent/");
        browser.wait_for("#consent-approve");
        check("cli-consent");
        browser.goto("/audit");
        browser.wait_for_text("main h1", "For auditors only");
        check("forbidden");
        browser.goto("/no-such-page");
        browser.wait_for_text("main h1", "Not found");
        check("not-found");
        // Error pages carry no session header: log out from a page that does.
        browser.goto("/my");
        browser.log_out();

        // bob, an approver: the inbox row has a Review button.
        browser.log_in("bob", PASSWORD);
        let row = format!("tr.request[data-id='{pending}']");
        browser.wait_for(&format!("{row} a.review"));
        assert_eq!(browser.text(&format!("{row} a.review")), "Review");
        check("inbox-approver");
        browser.click(&format!("{row} a.review"));
        browser.wait_for_url(&format!("/requests/{pending}"));
        browser.wait_for("#approve");
        check("request-to-decide");
        browser.log_out();

        // dave, an auditor who approves nothing: lands on the audit log.
        browser.log_in("dave", PASSWORD);
        browser.wait_for_url("/audit");
        browser.wait_for_text("main h1", "Audit log");
        check("audit-log");
        // The action filter is a select of known actions.
        browser.click("select[name='action'] option[value='session.record']");
        browser.click("#filter");
        browser.wait_for_url("action=session.record");
        browser.wait_for("tr.event");
        check("audit-log-filtered");
        // Times stay on one line (one line of text is about 20 px high).
        let tallest = browser.execute(
            "return Math.max(...[...document.querySelectorAll('#events .time')].map(t => t.getBoundingClientRect().height));",
        );
        assert!(
            tallest.as_f64().unwrap() < 30.0,
            "a time is {tallest} px tall"
        );
        browser.goto(&format!("/audit/requests/{granted}"));
        browser.wait_for_text("#sessions", "client_closed");
        check("audit-timeline");
        browser.goto("/audit/certificates");
        browser.wait_for("#certificates");
        check("audit-certificates");
        browser.goto("/audit/sessions");
        browser.wait_for("#sessions");
        check("audit-sessions");
        browser.log_out();
    }

    drop(browser);
    running.terminate();
}

// issue 12: the emergency option of the new-request form reaches the
// break-glass path: approved at once, with its incident id.
#[test]
fn break_glass_from_the_new_request_form_in_chromium() {
    let chromium: PathBuf = require("chromium", INSTALL_HINT);
    let chromedriver: PathBuf = require("chromedriver", INSTALL_HINT);
    let tmp = tempfile::tempdir().unwrap();
    let ca = demo_ca(tmp.path(), PASSWORD);
    let running = ca.serve();
    let browser = Browser::start(
        &chromium,
        &chromedriver,
        &format!("http://{}", running.addr),
    );
    browser.log_in("alice", PASSWORD);
    browser.goto("/requests/new");
    browser.wait_for_text("#emergency legend", "Emergency");
    browser.wait_for_text("#emergency", "every approver of the role is notified");
    browser.wait_for_text("#emergency", "a review follows");
    let color = browser
        .execute("return getComputedStyle(document.querySelector('#emergency')).borderTopColor;");
    assert_eq!(color, "rgb(164, 22, 26)", "the emergency box is red");
    browser.click("#role option[value='hotfix-admin']");
    browser.type_into("#hosts", "web-1");
    browser.type_into("#duration", "30m");
    browser.type_into("#reason", "INC-4412 database down, no approver reachable");
    browser.click("#break_glass");
    browser.type_into("#incident", "INC-4412");
    browser.click("#submit");
    browser.wait_for_url("/requests/req_");
    browser.wait_for_text("#state", "approved");
    let id = browser.url().rsplit('/').next().unwrap().to_owned();

    let token = api_token(running.addr, "alice");
    let (status, body) = http(
        running.addr,
        "GET",
        &format!("/api/v1/requests/{id}"),
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let request: Value = serde_json::from_str(&body).unwrap();
    let request = if request["request"].is_object() {
        request["request"].clone()
    } else {
        request
    };
    assert_eq!(request["approval_path"], "break_glass", "{request}");
    assert_eq!(request["ticket"], "INC-4412", "{request}");

    drop(browser);
    running.terminate();
}
