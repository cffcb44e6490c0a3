//! Single sign-on end to end, with real processes only: the npm
//! `oidc-provider` (tests/oidc-provider) as the company IdP, `tpa-ca serve`,
//! the real `tpa-ssh`, and headless Chromium. Users exist only at the IdP.
//! Alice logs in with `tpa-ssh login --no-browser` and confirms the code in
//! Chromium after logging in to the CA through the IdP's login form; she
//! asks for hotfix-admin (allowed to her IdP group `engineers`); bob
//! (`sre-leads`) and carol (`managers`) log in to the web page through the
//! IdP and approve; alice's CLI sees the request approved. Issue 4, "Done when".
//! And `tpa-ssh login` through its loopback listener, approved on the CA's
//! consent page in Chromium (issue 4 follow-up).

use crate::harness::start_provider;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Browser, INSTALL_HINT};
use crate::harness::{CaDir, Guard, RunningCa, free_port, require, tpa_ssh_bin};

fn tpa_ssh(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(tpa_ssh_bin());
    c.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// In Chromium: from the CA's login page, through the IdP's login form as
/// `who`, back to the CA (which continues to the page the login started from).
fn log_in_through_the_idp(browser: &Browser, who: &str) {
    browser.click("#oidc-idp");
    browser.type_into("#login", who);
    browser.click("#submit");
}

/// `tpa-ca serve` with one connector `idp` on a fresh IdP and the example roles.
struct SsoCa {
    _idp: Guard,
    issuer: String,
    addr: std::net::SocketAddr,
    running: RunningCa,
}

fn start_sso_ca(tmp: &Path) -> SsoCa {
    let ca = CaDir::init(tmp, "ca");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (idp, issuer) = start_provider(tmp, &format!("http://{addr}/oidc/callback"));
    let secret = ca.dir.join("idp.secret");
    std::fs::write(&secret, "tpa-e2e-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    assert!(config.contains("[server]\n"), "{config}");
    config = config.replacen(
        "[server]\n",
        &format!("[server]\npublic_url = \"http://{addr}\"\n"),
        1,
    );
    config.push_str(ca_server::config::EXAMPLE_ROLES);
    config.push_str(&format!(
        "\n[[oidc]]\nname = \"idp\"\ndisplay_name = \"Test IdP\"\nissuer = \"{issuer}\"\nclient_id = \"tpa\"\nclient_secret_file = \"idp.secret\"\ntrust_group_names = true\n"
    ));
    std::fs::write(&ca.config, config).unwrap();
    let running = ca.serve_at(addr, &[]);
    SsoCa {
        _idp: idp,
        issuer,
        addr,
        running,
    }
}

#[test]
fn idp_users_log_in_request_and_approve_in_chromium() {
    let chromium = require("chromium", INSTALL_HINT);
    let chromedriver = require("chromedriver", INSTALL_HINT);
    let tmp = tempfile::tempdir().unwrap();
    let SsoCa {
        _idp,
        issuer,
        addr,
        running,
    } = start_sso_ca(tmp.path());

    // Alice, on a machine without a browser: a URL and a code.
    let home = tmp.path().join("alice");
    std::fs::create_dir_all(&home).unwrap();
    let mut login = tpa_ssh(
        &home,
        &["login", "--ca", &format!("http://{addr}"), "--no-browser"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = login.stderr.take().unwrap();
    let stdout = login.stdout.take().unwrap();
    let mut login = Guard { child: login };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut after_enter = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if after_enter {
                let _ = tx.send(line.trim().to_owned());
                after_enter = false;
            }
            if line.contains("type this code") {
                after_enter = true;
            }
        }
    });
    let code = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tpa-ssh login --no-browser printed no code");

    // Any browser: the code page sends her to log in through the IdP's own
    // login form, comes back, and shows what she is authorising.
    let browser = Browser::start(&chromium, &chromedriver, &format!("http://{addr}"));
    // She types the code (issue 18: a code is never filled in from a link).
    browser.goto("/device");
    log_in_through_the_idp(&browser, "alice");
    browser.wait_for("#user_code");
    browser.type_into("#user_code", &code);
    browser.click("#device-continue");
    browser.wait_for_text("#device-code", &code);
    browser.wait_for_text("#device-source", "127.0.0.1");
    browser.wait_for_text("#device-what", "YOUR account (alice)");
    browser.wait_for_text(
        "#device-phishing",
        "If someone sent you this link or code, deny",
    );
    browser.click("#device-approve");
    browser.wait_for_text("#device-done", "Approved");

    // The CLI's poll picks the approval up (interval 5 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = login.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tpa-ssh login did not finish within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(
        out.contains("Logged in") && out.contains("engineers"),
        "{out}"
    );

    let who = tpa_ssh(&home, &["whoami", "--json"]).output().unwrap();
    assert!(who.status.success(), "{}", text(&who));
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(
        who["whoami"]["user"]["identity"]["issuer"],
        issuer.as_str(),
        "{who}"
    );
    assert_eq!(
        who["whoami"]["user"]["identity"]["subject"], "idp-alice",
        "{who}"
    );
    // issue 18: a device login's token is marked as such.
    assert_eq!(who["whoami"]["device_login"], true, "{who}");

    // She asks for the role her IdP group may request.
    let asked = tpa_ssh(
        &home,
        &[
            "request",
            "--role",
            "hotfix-admin",
            "--host",
            "web-1",
            "--for",
            "1h",
            "--reason",
            "INC-4411 disk full on web-1",
            "--ticket",
            "INC-4411",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(asked.status.success(), "{}", text(&asked));
    let asked: Value = serde_json::from_slice(&asked.stdout).unwrap();
    let id = asked["request"]["id"]
        .as_str()
        .or_else(|| asked["id"].as_str())
        .unwrap_or_else(|| panic!("no request id in {asked}"))
        .to_owned();

    // Bob (IdP group sre-leads) logs in to the web page through the IdP and approves stage 1.
    browser.delete_cookies();
    browser.goto("/login");
    log_in_through_the_idp(&browser, "bob");
    let row = format!("tr.request[data-id='{id}']");
    browser.wait_for_text(&row, "1 more needed from sre-leads");
    browser.click(&format!("{row} a"));
    browser.click("#approve");
    browser.wait_for_text("#needed", "stage 2 of 2: 1 more needed from managers");

    // Carol (managers) does the same for stage 2.
    browser.delete_cookies();
    browser.goto("/login");
    log_in_through_the_idp(&browser, "carol");
    browser.wait_for_text(&row, "stage 2 of 2");
    browser.click(&format!("{row} a"));
    browser.click("#approve");
    browser.wait_for_text("#state", "approved");
    browser.wait_for_text("#approvals", "carol (stage 2");

    let status = tpa_ssh(&home, &["status", &id, "--json"]).output().unwrap();
    assert!(status.status.success(), "{}", text(&status));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let state = status["state"]
        .as_str()
        .or_else(|| status["request"]["state"].as_str());
    assert_eq!(state, Some("approved"), "{status}");

    drop(browser);
    running.terminate();
}

/// `tpa-ssh login` on a machine with a browser (issue 4 follow-up): the real
/// CLI's loopback listener, Chromium through the IdP's login form, then the
/// CA's consent page naming the CLI's port; only the click on Approve sends
/// the code to the listener, and the CLI is logged in as alice.
#[test]
fn tpa_ssh_loopback_login_approved_on_the_consent_page_in_chromium() {
    let chromium = require("chromium", INSTALL_HINT);
    let chromedriver = require("chromedriver", INSTALL_HINT);
    let tmp = tempfile::tempdir().unwrap();
    let sso = start_sso_ca(tmp.path());
    let addr = sso.addr;
    let home = tmp.path().join("alice");
    std::fs::create_dir_all(&home).unwrap();
    let mut login = tpa_ssh(&home, &["login", "--ca", &format!("http://{addr}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = login.stderr.take().unwrap();
    let stdout = login.stdout.take().unwrap();
    let mut login = Guard { child: login };
    let (tx, rx) = mpsc::channel();
    let (phrase_tx, phrase_rx) = mpsc::channel();
    let prefix = format!("http://{addr}");
    let printed = prefix.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(path) = line.trim().strip_prefix(&printed) {
                let _ = tx.send(path.to_owned());
            }
            if let Some(phrase) = line.trim().strip_prefix("Confirmation phrase: ") {
                let _ = phrase_tx.send(phrase.to_owned());
            }
        }
    });
    let path = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tpa-ssh login printed no URL");
    let phrase = phrase_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tpa-ssh login printed no confirmation phrase");
    let port = path
        .split("127.0.0.1%3A")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .unwrap_or_else(|| panic!("no loopback port in {path}"))
        .to_owned();

    let browser = Browser::start(&chromium, &chromedriver, &prefix);
    browser.goto(&path);
    browser.type_into("#login", "alice");
    browser.click("#submit");
    browser.wait_for_text("#consent-what", "as you (alice)");
    browser.wait_for_text("#consent-port", &format!("port {port}"));
    browser.wait_for_text("#consent-source", "127.0.0.1");
    // issue 18: the page shows the phrase the terminal printed.
    browser.wait_for_text("#consent-phrase", &phrase);
    browser.wait_for_text(
        "#consent-phrase-box",
        "continue only if it matches your terminal",
    );
    // Nothing reached the CLI before the click.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        login.child.try_wait().unwrap().is_none(),
        "tpa-ssh login finished before the consent"
    );
    browser.click("#consent-approve");
    browser.wait_for_text("body", "You are logged in to TPA");

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = login.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tpa-ssh login did not finish within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("Logged in"), "{out}");
    // issue 18: the account is named so that it cannot be missed, with a
    // pointer to `tpa-ssh whoami`.
    assert!(
        out.contains(&format!("LOGGED IN AS: alice ({}#idp-alice)", sso.issuer)),
        "{out}"
    );
    assert!(out.contains("tpa-ssh whoami"), "{out}");
    let who = tpa_ssh(&home, &["whoami", "--json"]).output().unwrap();
    assert!(who.status.success(), "{}", text(&who));
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(
        who["whoami"]["user"]["identity"]["issuer"],
        sso.issuer.as_str(),
        "{who}"
    );
    assert_eq!(
        who["whoami"]["user"]["identity"]["subject"], "idp-alice",
        "{who}"
    );
    // Issue 12: the provider's `name` claim is the display name, kept with
    // the loopback login's token and shown first by `tpa-ssh whoami`.
    assert_eq!(who["whoami"]["user"]["display_name"], "Alice", "{who}");
    let plain = tpa_ssh(&home, &["whoami"]).output().unwrap();
    assert!(plain.status.success(), "{}", text(&plain));
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
    assert_eq!(plain.lines().next(), Some("Alice"), "{plain}");
    assert!(plain.contains("username: alice"), "{plain}");
    drop(browser);
    sso.running.terminate();
}
