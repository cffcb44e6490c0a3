//! Single sign-on for tests: the real npm `oidc-provider` (tests/oidc-provider)
//! as a guarded child process, `[[oidc]]` connectors, a cookie-jar browser
//! that follows the provider's redirects by hand, and the CLI's side of the
//! loopback login (PKCE, `tpa-ssh login` as a child process).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::app::{TestApp, spawn_app_bound};
use crate::data_dir::{DataDir, write_private};
use crate::http::{Response, http_send};
use crate::process::Guard;
use crate::web::form_encode;

/// The provider's directory (package.json, server.js, node_modules).
pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc-provider")
}

/// A running `oidc-provider`, killed (by PID) on drop.
#[derive(Debug)]
pub struct Provider {
    /// Killed (by PID) when the provider drops.
    _process: Guard,
    /// The port it listens on.
    pub port: u16,
    _config: tempfile::TempDir,
}

impl Provider {
    /// Starts the provider with one client `tpa` for `redirect_uri`, the given
    /// users (`login_hint` → claims) and extra settings (`clock_offset`, …).
    pub fn start(redirect_uri: &str, users: serde_json::Value, extra: serde_json::Value) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port, redirect_uri, users, extra)
    }

    /// Like [`Provider::start`] on a given port (a restart is a key rotation:
    /// every start signs with a fresh key and `kid`).
    pub fn start_on(
        port: u16,
        redirect_uri: &str,
        users: serde_json::Value,
        extra: serde_json::Value,
    ) -> Self {
        let dir = provider_dir();
        if Command::new("node").arg("--version").output().is_err() {
            panic!(
                "node is not installed: the OIDC tests need Node.js ≥ 20.19 and npm (Debian: apt-get install nodejs npm), then `npm ci --prefix tests/oidc-provider` (scripts/test does it)"
            );
        }
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc-provider/node_modules is missing: run `npm ci --prefix tests/oidc-provider` (scripts/test does it)"
        );
        let config_dir = tempfile::tempdir().unwrap();
        let mut config = json!({
            "clients": [{
                "client_id": "tpa",
                "client_secret": "tpa-test-secret",
                "redirect_uris": [redirect_uri],
            }],
            "users": users,
        });
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let path = config_dir.path().join("provider.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(dir.join("server.js"))
            .arg(port.to_string())
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.starts_with("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        let provider = Self {
            _process: Guard::new(child),
            port,
            _config: config_dir,
        };
        rx.recv_timeout(Duration::from_secs(30))
            .expect("oidc-provider did not start within 30 s");
        provider
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub fn users() -> serde_json::Value {
    json!({
        "alice": {"sub": "alice-sub-1", "preferred_username": "alice", "name": "Alice A",
                  "email": "shared@example.com", "groups": ["engineers", "sre-leads"]},
        "mallory": {"sub": "mallory-sub-2", "preferred_username": "alice",
                    "email": "shared@example.com", "groups": []},
        "bad-name": {"sub": "bad-sub-3", "preferred_username": "Not A Username!", "groups": []},
    })
}

/// Appends an `[[oidc]]` connector named `name` for `issuer` (client `tpa`).
pub fn add_connector(data: &mut DataDir, name: &str, issuer: &str) {
    let secret = data.dir.join(format!("{name}.secret"));
    write_private(&secret, b"tpa-test-secret\n");
    data.edit_config(|text| {
        format!(
            "{text}\n[[oidc]]\nname = \"{name}\"\nissuer = \"{issuer}\"\nclient_id = \"tpa\"\nclient_secret_file = \"{}\"\ntrust_group_names = true\n",
            secret.display()
        )
    });
}

pub fn set_public_url(data: &mut DataDir, address: SocketAddr) {
    data.edit_config(|text| {
        assert!(text.contains("[server]\n"), "{text}");
        text.replacen(
            "[server]\n",
            &format!("[server]\npublic_url = \"http://{address}\"\n"),
            1,
        )
    });
}

/// The callback URI the CA registers for `address`.
pub fn callback_uri(address: SocketAddr) -> String {
    format!("http://{address}/oidc/callback")
}

/// A reserved CA address (the provider must know the redirect URI first).
pub async fn reserve() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A browser: a cookie jar per port, redirects followed by hand.
#[derive(Debug, Default)]
pub struct Browser {
    jars: std::collections::HashMap<u16, Vec<(String, String)>>,
}

pub fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    (host.parse().unwrap(), path.to_owned())
}

impl Browser {
    pub async fn get(&mut self, url: &str) -> Response {
        let (address, path) = split_url(url);
        let jar = self.jars.entry(address.port()).or_default();
        let cookie: String = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = vec![];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let response = http_send(address, "GET", &path, &headers, "").await;
        remember(jar, &response);
        response
    }

    /// A form post (`application/x-www-form-urlencoded`) with this browser's cookies.
    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Response {
        let (address, path) = split_url(url);
        let jar = self.jars.entry(address.port()).or_default();
        let cookie: String = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let body: String = fields
            .iter()
            .map(|(n, v)| format!("{n}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let response = http_send(address, "POST", &path, &headers, &body).await;
        remember(self.jars.entry(address.port()).or_default(), &response);
        response
    }

    pub fn cookie(&self, port: u16, name: &str) -> Option<String> {
        self.jars
            .get(&port)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// Starts a login at the CA and follows the provider (as `login_hint`)
    /// until it sends the browser back to the CA; returns that callback URL.
    pub async fn login_at_provider(
        &mut self,
        ca: &TestApp,
        start: &str,
        login_hint: &str,
    ) -> String {
        let r = self.get(&format!("http://{}{start}", ca.address)).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let mut url = format!("{}&login_hint={login_hint}", r.header("location").unwrap());
        for _ in 0..10 {
            let (address, _) = split_url(&url);
            if address == ca.address {
                return url;
            }
            let r = self.get(&url).await;
            assert!(
                matches!(r.status, 302 | 303),
                "{} {}: {}",
                r.status,
                url,
                r.body
            );
            let location = r.header("location").unwrap();
            url = if location.starts_with('/') {
                format!("http://{address}{location}")
            } else {
                location.to_owned()
            };
        }
        panic!("the provider did not send the browser back to the CA");
    }

    /// Logs in through connector `idp` as `login_hint`; returns the callback's answer.
    pub async fn web_login(
        &mut self,
        ca: &TestApp,
        connector: &str,
        login_hint: &str,
        next: &str,
    ) -> Response {
        let callback = self
            .login_at_provider(
                ca,
                &format!("/login/oidc/{connector}?next={next}"),
                login_hint,
            )
            .await;
        self.get(&callback).await
    }

    pub async fn whoami(&mut self, ca: &TestApp) -> Response {
        self.get(&format!("http://{}/api/v1/whoami", ca.address))
            .await
    }
}

/// Keeps the cookies a response sets (and forgets the ones it clears).
pub fn remember(jar: &mut Vec<(String, String)>, response: &Response) {
    for (name, value) in &response.headers {
        if name != "set-cookie" {
            continue;
        }
        let pair = value.split(';').next().unwrap();
        let (n, v) = pair.split_once('=').unwrap();
        jar.retain(|(existing, _)| existing != n);
        if !v.is_empty() && !value.contains("Max-Age=0") {
            jar.push((n.to_owned(), v.to_owned()));
        }
    }
}

/// The URL the signed-in page continues to.
pub fn continue_to(page: &Response) -> String {
    let start = page.body.find("url=").expect("meta refresh") + 4;
    let end = start + page.body[start..].find('"').unwrap();
    page.body[start..end].replace("&#x2f;", "/")
}

/// A CA with one connector `idp` on a fresh provider.
pub async fn ca_with_provider(extra: serde_json::Value, roles: bool) -> (Provider, TestApp) {
    let listener = reserve().await;
    let address = listener.local_addr().unwrap();
    let provider = Provider::start(&callback_uri(address), users(), extra);
    let app = spawn_app_at_address(&[("idp", provider.issuer())], roles, listener).await;
    (provider, app)
}

/// Like [`ca`], on a listener bound earlier (the provider had to know the
/// CA's redirect URI first).
pub async fn spawn_app_at_address(
    issuers: &[(&str, String)],
    roles: bool,
    listener: tokio::net::TcpListener,
) -> TestApp {
    let issuers: Vec<(String, String)> = issuers
        .iter()
        .map(|(n, i)| ((*n).to_owned(), i.clone()))
        .collect();
    spawn_app_bound(listener, move |data, address| {
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

pub fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

/// The CSRF token of the logged-in page.
pub async fn csrf(browser: &mut Browser, app: &TestApp) -> String {
    let page = browser.get(&format!("http://{}/my", app.address)).await;
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.body.find(marker).unwrap() + marker.len();
    let end = start + page.body[start..].find('"').unwrap();
    page.body[start..end].to_owned()
}

pub async fn post_json(
    browser: &Browser,
    app: &TestApp,
    path: &str,
    csrf: &str,
    body: &str,
) -> Response {
    let cookie = format!(
        "tpa_session={}",
        browser.cookie(app.address.port(), "tpa_session").unwrap()
    );
    http_send(
        app.address,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &cookie),
            ("X-CSRF-Token", csrf),
        ],
        body,
    )
    .await
}

/// The CLI's PKCE pair: (verifier, S256 challenge).
pub fn cli_pkce() -> (String, String) {
    use base64ct::{Base64UrlUnpadded, Encoding as _};
    use sha2::{Digest as _, Sha256};
    let verifier = "v".repeat(20) + &"x".repeat(30);
    let challenge = Base64UrlUnpadded::encode_string(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// `tpa-ssh login --ca URL` (loopback) as a child process with its own
/// `HOME`: the child, the login URL it printed (a path on the CA), the home,
/// and the rest of its stderr once it exits.
pub async fn spawn_tpa_ssh_login(
    app: &TestApp,
) -> (
    tokio::process::Child,
    String,
    tempfile::TempDir,
    tokio::task::JoinHandle<String>,
) {
    use tokio::io::AsyncBufReadExt as _;
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("tpa-ssh");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (scripts/test does)",
        bin.display()
    );
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(&bin)
        .args(["login", "--ca", &format!("http://{}", app.address)])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix(&format!("http://{}", app.address)) {
                return url.to_owned();
            }
        }
        panic!("tpa-ssh printed no login URL");
    })
    .await
    .unwrap();
    assert!(
        url.starts_with("/cli/login?redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{url}"
    );
    // Keep reading stderr so the child never blocks on a full pipe; the
    // rest of it (the error of a denied login) comes back through the task.
    let rest = tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    (child, url, home, rest)
}
