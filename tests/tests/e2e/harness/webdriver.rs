//! Headless Chromium driven through chromedriver with the W3C WebDriver
//! protocol (over tpa-testkit's reqwest client), and the demo-like CA its tests use.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{CaDir, Guard, free_port, hash_password, wait_for_port};

pub const INSTALL_HINT: &str = "the browser test needs Debian's chromium and chromium-driver: \
     apt-get update && apt-get install -y chromium chromium-driver (./scripts/test does this when run as root)";

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long to wait for a page to show something.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// One HTTP exchange (tpa-testkit's reqwest client) with chromedriver or
/// the CA, within 90 s (starting a browser can be slow); returns (status,
/// body, which must be UTF-8).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let response =
        tpa_testkit::http_send_blocking(addr, method, path, headers, body, Duration::from_secs(90));
    let body = String::from_utf8(response.bytes)
        .unwrap_or_else(|e| panic!("{method} {path}: the body is not UTF-8: {e}"));
    (response.status, body)
}

/// A chromedriver process and one browser session in it. Dropping it ends the
/// session (which quits Chromium), then kills chromedriver by PID.
pub struct Browser {
    driver: SocketAddr,
    session: String,
    base: String,
    driver_process: Guard,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start(chromium: &Path, chromedriver: &Path, base: &str) -> Self {
        let port = free_port();
        let driver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Its own process group, so that Chromium and its helpers can be killed
        // with it even when the session never started or was not closed.
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}; {INSTALL_HINT}", chromedriver.display()));
        let guard = Guard { child };
        wait_for_port(driver, Duration::from_secs(20), "chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": chromium, "args": args },
                }
            }
        });
        // Built before the session exists, so a failure below still kills
        // whatever chromedriver started (see Drop).
        let mut browser = Self {
            driver,
            session: String::new(),
            base: base.to_owned(),
            driver_process: guard,
            _profile: profile,
        };
        let (status, body) = http(
            driver,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            &capabilities.to_string(),
        );
        assert_eq!(status, 200, "chromedriver could not start Chromium: {body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        browser.session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {body}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; returns its `value`, panicking on a WebDriver error.
    pub fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One WebDriver command; `Err` with the reply on a WebDriver error (such
    /// as a stale element while a page loads).
    pub fn try_command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if method == "POST" {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let (status, reply) = http(self.driver, method, &path, headers, &text);
        let reply: Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {reply}"));
        if status == 200 {
            Ok(reply["value"].clone())
        } else {
            Err(format!("{status} {}", reply["value"]["message"]))
        }
    }

    pub fn goto(&self, path: &str) {
        self.command(
            "POST",
            "/url",
            Some(json!({ "url": format!("{}{path}", self.base) })),
        );
    }

    pub fn url(&self) -> String {
        self.command("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML as the browser has it now.
    pub fn source(&self) -> String {
        self.command("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element matching `css`, if there is one now.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self.command(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found
            .as_array()
            .and_then(|all| all.first())
            .and_then(|e| e[ELEMENT_KEY].as_str())
            .map(str::to_owned)
    }

    /// How many elements match `css` now.
    pub fn count(&self, css: &str) -> usize {
        self.command(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    /// Waits until `css` matches, then returns the element.
    pub fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css:?} on {} within {PAGE_TIMEOUT:?}; page:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The visible text of the first element matching `css` (empty when none).
    pub fn text(&self, css: &str) -> String {
        // An element of a page that is being replaced is stale: no text yet.
        self.find(css)
            .and_then(|e| {
                self.try_command("GET", &format!("/element/{e}/text"), None)
                    .ok()
            })
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Waits until the text of `css` contains `needle`.
    /// Waits until the page's URL contains `needle`: after a click, the old
    /// page may still show the element the next step waits for.
    pub fn wait_for_url(&self, needle: &str) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        while !self.url().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the URL never contained {needle:?}; it is {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_for_text(&self, css: &str, needle: &str) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let text = self.text(css);
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} on {} never contained {needle:?}; it says {text:?}; page:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, css: &str) {
        let e = self.wait_for(css);
        self.command("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css);
        self.command("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.command(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Deletes every cookie of the current page's host (all ports: cookies
    /// do not separate by port, so this logs out of the CA and the IdP).
    pub fn delete_cookies(&self) {
        self.command("DELETE", "/cookie", None);
    }

    /// Logs in on `/login` with the form and waits for the page it lands on
    /// (the inbox; the audit log for an auditor who approves nothing).
    pub fn log_in(&self, username: &str, password: &str) {
        self.goto("/login");
        self.type_into("#username", username);
        self.type_into("#password", password);
        self.click("section.login button[type=submit]");
        // The header shows the display name; the username is its data attribute.
        self.wait_for(&format!("header .who .user[data-username='{username}']"));
        self.wait_for("main h1");
    }

    /// Resizes the browser window (the viewport follows in headless mode).
    pub fn set_window(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Runs `script` (a function body) in the page; returns its value.
    pub fn execute(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64ct::{Base64, Encoding as _};
        let data = self.command("GET", "/screenshot", None);
        let png = Base64::decode_vec(data.as_str().expect("base64 screenshot"))
            .expect("the screenshot is base64");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Logs out with the header's form and waits for the login page.
    pub fn log_out(&self) {
        self.click("form[action='/logout'] button");
        self.wait_for("#username");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Quit Chromium through chromedriver; the guard then kills chromedriver.
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = std::panic::catch_unwind(|| http(self.driver, "DELETE", &path, &[], ""));
        }
        // Then kill what is left of the process group chromedriver leads.
        let group = format!("-{}", self.driver_process.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }
}

/// A CA like `tpa-ca demo`: the brief's two roles, alice, bob, carol and
/// dave, and `[auditors]` (dave's group).
pub fn demo_ca(parent: &Path, password: &str) -> CaDir {
    let ca = CaDir::init(parent, "ca");
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(ca_server::config::EXAMPLE_ROLES);
    let hash = hash_password(password);
    for (user, group) in [
        ("alice", "engineers"),
        ("bob", "sre-leads"),
        ("carol", "managers"),
        ("dave", "auditors"),
    ] {
        config.push_str(&format!(
            "\n[[accounts]]\nusername = \"{user}\"\npassword_hash = \"{hash}\"\ngroups = [\"{group}\"]\n"
        ));
    }
    config.push_str("\n[auditors]\ngroups = [\"auditors\"]\n");
    std::fs::write(&ca.config, config).unwrap();
    ca
}

/// Alice asks for hotfix-admin through the JSON API; returns the request id.
pub fn alice_requests_hotfix(ca: SocketAddr, password: &str) -> String {
    let login = json!({ "username": "alice", "password": password }).to_string();
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
    let request = json!({
        "role": "hotfix-admin",
        "hosts": ["web-1"],
        "duration": "1h",
        "reason": "INC-4411 disk full on web-1",
        "ticket": "INC-4411",
    })
    .to_string();
    let bearer = format!("Bearer {token}");
    let (status, body) = http(
        ca,
        "POST",
        "/api/v1/requests",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        &request,
    );
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}
