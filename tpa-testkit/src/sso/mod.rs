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

mod browser;
mod cli;

pub use browser::{Browser, continue_to, csrf, post_json, query_param, remember, split_url};
pub use cli::{cli_pkce, spawn_tpa_ssh_login};

use crate::app::{TestApp, spawn_app_bound};
use crate::data_dir::{DataDir, write_private};
use crate::process::Guard;

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
