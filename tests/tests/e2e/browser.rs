//! The web approval page in a real browser: headless Chromium driven through
//! chromedriver with the W3C WebDriver protocol (`harness::Browser`).
//! In the browser bob logs in; alice asks for hotfix-admin through the JSON
//! API and the request appears in bob's open inbox (live refresh); he opens it
//! and approves (stage 2 is then open), logs out; carol logs in, finds it and
//! approves; the page shows it approved. Issue 3, item 8.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test
//! fails with the install command (`./scripts/test` installs them as root).

use crate::harness::{Browser, INSTALL_HINT, alice_requests_hotfix, demo_ca, http};
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::harness::require;

#[test]
fn approvers_approve_in_headless_chromium() {
    let chromium: PathBuf = require("chromium", INSTALL_HINT);
    let chromedriver: PathBuf = require("chromedriver", INSTALL_HINT);
    let tmp = tempfile::tempdir().unwrap();
    let password = "browser test password";
    let ca = demo_ca(tmp.path(), password);
    let running = ca.serve();
    let browser = Browser::start(
        &chromium,
        &chromedriver,
        &format!("http://{}", running.addr),
    );

    // Not logged in: the inbox sends the browser to the login page.
    browser.goto("/");
    browser.wait_for("#username");
    assert!(browser.url().ends_with("/login"), "{}", browser.url());

    // Bob (stage 1, sre-leads) has an empty inbox; alice's request appears in
    // it without a reload by hand (static/refresh.js polls the API).
    browser.log_in("bob", password);
    browser.wait_for_text("#empty", "Nothing is waiting");
    let id = alice_requests_hotfix(running.addr, password);
    let row = format!("tr.request[data-id='{id}']");
    browser.wait_for(&row);
    browser.wait_for_text(&row, "INC-4411 disk full on web-1");
    browser.wait_for_text(&row, "1 more needed from sre-leads");
    browser.click(&format!("{row} a"));
    browser.wait_for_text("#state", "pending");
    assert_eq!(browser.text("#reason"), "INC-4411 disk full on web-1");
    browser.click("#approve");
    browser.wait_for_text("#needed", "stage 2 of 2: 1 more needed from managers");
    browser.wait_for_text("#approvals", "bob (stage 1");
    // issue 11: the redirect after a decision names it (for the banner).
    assert!(
        browser
            .url()
            .ends_with(&format!("/requests/{id}?decided=approve")),
        "{}",
        browser.url()
    );
    assert!(
        browser.find("#approve").is_none(),
        "bob may not approve twice"
    );
    browser.log_out();

    // Carol (stage 2, managers) now finds it in her inbox and approves it.
    browser.log_in("carol", password);
    browser.wait_for_text(&row, "stage 2 of 2");
    browser.click(&format!("{row} a"));
    browser.click("#approve");
    browser.wait_for_text("#state", "approved");
    browser.wait_for_text("#approvals", "carol (stage 2");
    browser.wait_for_text("#window", "UTC to");
    assert!(browser.find("#needed").is_none());
    assert!(
        browser.text("#approve").is_empty(),
        "nothing left to decide"
    );

    drop(browser);
    running.terminate();
}

/// Issue 7, item 3: dave (auditors) reads the audit log, filters it, opens a
/// request's timeline, the certificates and the sessions, and finds no
/// control that changes anything; alice (no auditor) has no audit links and
/// gets a 403 page.
#[test]
fn auditor_reads_the_trail_in_headless_chromium() {
    let chromium: PathBuf = require("chromium", INSTALL_HINT);
    let chromedriver: PathBuf = require("chromedriver", INSTALL_HINT);
    let tmp = tempfile::tempdir().unwrap();
    let password = "browser test password";
    let ca = demo_ca(tmp.path(), password);
    let running = ca.serve();
    let id = alice_requests_hotfix(running.addr, password);
    let browser = Browser::start(
        &chromium,
        &chromedriver,
        &format!("http://{}", running.addr),
    );

    // Issue 12: an auditor who approves nothing lands on the audit log.
    browser.log_in("dave", password);
    browser.wait_for_url("/audit");
    browser.click("#nav-audit");
    browser.wait_for_text("main h1", "Audit log");
    browser.wait_for_text("#events", "request.submit");
    browser.wait_for_text("#events", "INC-4411 disk full on web-1");
    // Read-only: the only form that posts is the logout button's, and the
    // only other button is the filter's (a GET form).
    let read_only = |page: &str| {
        assert_eq!(browser.count("form[method='post']"), 1, "{page}");
        assert_eq!(
            browser.count("form[method='post'][action='/logout']"),
            1,
            "{page}"
        );
        // The filter form's selects only choose what a GET shows.
        assert_eq!(
            browser.count("textarea, input[type='checkbox'], form:not([method='get']) select"),
            0,
            "{page}"
        );
        assert!(browser.find("#approve").is_none() && browser.find("#deny").is_none());
    };
    read_only("log");
    assert_eq!(browser.count("button"), 2, "filter and logout only");

    // Filter by action: only the submission is left.
    browser.click("select[name='action'] option[value='request.submit']");
    browser.click("#filter");
    browser.wait_for_url("action=request.submit");
    browser.wait_for(&format!("a[href='/audit/requests/{id}']"));
    assert_eq!(browser.count("tr.event"), 1, "{}", browser.source());

    // The request's timeline.
    browser.click(&format!("a[href='/audit/requests/{id}']"));
    browser.wait_for_url(&format!("/audit/requests/{id}"));
    browser.wait_for_text("#state", "pending");
    browser.wait_for_text("#events", "request.submit");
    browser.wait_for_text("#certificates", "No certificates");
    browser.wait_for_text("#sessions", "No sessions");
    read_only("timeline");

    for (link, path, table) in [
        ("#nav-certificates", "/audit/certificates", "#certificates"),
        ("#nav-sessions", "/audit/sessions", "#sessions"),
    ] {
        browser.click(link);
        browser.wait_for_url(path);
        browser.wait_for(table);
        read_only(link);
    }
    browser.log_out();

    // alice is no auditor: no links, and the page is refused.
    browser.log_in("alice", password);
    assert!(browser.find("#nav-audit").is_none());
    browser.goto("/audit");
    browser.wait_for_text("main h1", "For auditors only");
    browser.wait_for_text("#error", "auditor");
    // Plain words with the next step, no configuration jargon (issue 12).
    assert!(!browser.text("#error").contains("[auditors]"));
    browser.wait_for("#next-steps a[href='/']");
    assert!(browser.find("#events").is_none());

    drop(browser);
    running.terminate();
}

/// Issue #7: an approver revokes an active grant from the request page in
/// Chromium; the confirmation box is required before the form goes out.
#[test]
fn an_approver_revokes_a_grant_in_headless_chromium() {
    let chromium: PathBuf = require("chromium", INSTALL_HINT);
    let chromedriver: PathBuf = require("chromedriver", INSTALL_HINT);
    let tmp = tempfile::tempdir().unwrap();
    let password = "browser test password";
    let ca = demo_ca(tmp.path(), password);
    let running = ca.serve();
    let id = alice_requests_hotfix(running.addr, password);
    for approver in ["bob", "carol"] {
        let login = json!({ "username": approver, "password": password }).to_string();
        let (status, body) = http(
            running.addr,
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            &login,
        );
        assert_eq!(status, 200, "{body}");
        let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let bearer = format!("Bearer {token}");
        let (status, body) = http(
            running.addr,
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            &[("Authorization", &bearer)],
            "",
        );
        assert_eq!(status, 200, "{body}");
    }
    let browser = Browser::start(
        &chromium,
        &chromedriver,
        &format!("http://{}", running.addr),
    );

    browser.log_in("bob", password);
    browser.goto(&format!("/requests/{id}"));
    browser.wait_for_text("#state", "approved");
    browser.wait_for("#revoke-form");
    browser.type_into(
        "#revoke-reason",
        "INC-4411 resolved, access no longer needed",
    );
    // Without the confirmation box the browser does not send the form.
    browser.click("#revoke");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(browser.text("#state"), "approved");
    browser.click("#revoke-confirm");
    browser.click("#revoke");
    browser.wait_for_text("#state", "revoked");
    browser.wait_for_text("#comment", "INC-4411 resolved");
    assert!(browser.find("#revoke-form").is_none());
    browser.log_out();

    // The requester sees it revoked and has no revoke form.
    browser.log_in("alice", password);
    browser.goto(&format!("/requests/{id}"));
    browser.wait_for_text("#state", "revoked");
    assert!(browser.find("#revoke-form").is_none());

    drop(browser);
    running.terminate();
}

/// Logs `user` in through the JSON API; returns the bearer header value.
fn api_bearer(ca: SocketAddr, user: &str, password: &str) -> String {
    let login = json!({ "username": user, "password": password }).to_string();
    let (status, body) = http(
        ca,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &login,
    );
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    format!("Bearer {token}")
}

/// Issue 11, item 7: the request page shows the grant snapshot (principals,
/// hosts, extensions, critical options, certificate TTL, window), each stage
/// with its group and who can still approve, takes an optional comment with
/// an approval, says what the decision did, names who revoked and when, and
/// shows a break-glass grant as such with its incident id.
#[test]
fn request_page_shows_the_grant_and_the_stages_in_headless_chromium() {
    let chromium: PathBuf = require("chromium", INSTALL_HINT);
    let chromedriver: PathBuf = require("chromedriver", INSTALL_HINT);
    let tmp = tempfile::tempdir().unwrap();
    let password = "browser test password";
    let ca = demo_ca(tmp.path(), password);
    let running = ca.serve();
    let id = alice_requests_hotfix(running.addr, password);
    let browser = Browser::start(
        &chromium,
        &chromedriver,
        &format!("http://{}", running.addr),
    );

    browser.log_in("bob", password);
    browser.goto(&format!("/requests/{id}"));
    browser.wait_for_text("#state", "pending");
    assert_eq!(browser.text("#grant-principals"), "root");
    assert_eq!(browser.text("#grant-hosts"), "web-1");
    assert_eq!(browser.text("#grant-extensions"), "permit-pty");
    assert!(browser.text("#grant-force-command").contains("none"));
    assert_eq!(browser.text("#grant-source-address"), "any");
    assert!(browser.text("#grant-cert-ttl").contains("15m"));
    assert!(
        browser
            .text("#grant-window")
            .contains("1h from the final approval")
    );
    browser.wait_for_text("#stage-1", "sre-leads");
    assert!(browser.text("#stage-1 .can-approve").contains("bob"));
    assert!(!browser.text("#stage-1 .can-approve").contains("alice"));
    assert!(browser.text("#stage-2 .can-approve").contains("carol"));

    browser.type_into("#approve-comment", "runbook step 3 checked");
    browser.click("#approve");
    browser.wait_for_text(
        "#banner",
        "You approved. Waiting for 1 approval from managers.",
    );
    browser.wait_for_text("#approvals", "bob (stage 1, counted for sre-leads");
    browser.wait_for_text("#approvals", "runbook step 3 checked");
    assert!(browser.text("#stage-1").contains("bob"));
    browser.log_out();

    browser.log_in("carol", password);
    browser.goto(&format!("/requests/{id}"));
    browser.click("#approve");
    browser.wait_for_text("#banner", "You approved. The request is approved.");
    browser.wait_for_text("#state", "approved");
    browser.wait_for_text("#grant-window", "UTC to");
    browser.type_into("#revoke-reason", "INC-4411 resolved");
    browser.click("#revoke-confirm");
    browser.click("#revoke");
    browser.wait_for_text("#state", "revoked");
    browser.wait_for_text("#decided-by", "carol at ");
    browser.log_out();

    // Break-glass: self-approved, shown as such with its incident id.
    let bearer = api_bearer(running.addr, "alice", password);
    let body = json!({
        "role": "hotfix-admin", "hosts": ["web-2"], "duration": "30m",
        "reason": "site down", "ticket": "INC-9001", "break_glass": true,
    })
    .to_string();
    let (status, answer) = http(
        running.addr,
        "POST",
        "/api/v1/requests",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        &body,
    );
    assert_eq!(status, 201, "{answer}");
    let glass = serde_json::from_str::<Value>(&answer).unwrap()["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.log_in("bob", password);
    browser.goto(&format!("/requests/{glass}"));
    browser.wait_for_text("#break-glass", "Break-glass grant");
    browser.wait_for_text("#break-glass", "INC-9001");

    drop(browser);
    running.terminate();
}
