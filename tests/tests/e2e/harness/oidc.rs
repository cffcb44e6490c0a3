//! The npm `oidc-provider` (tests/oidc-provider) as the company IdP, started
//! on a free port and killed by PID when its guard drops.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use super::{Guard, free_port, require};

/// The provider's directory (package.json, server.js, node_modules).
fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// Starts the IdP on a free port with one client `tpa` for `redirect_uri`;
/// returns its guard and issuer URL.
pub fn start_provider(tmp: &Path, redirect_uri: &str) -> (Guard, String) {
    let node = require(
        "node",
        "the SSO tests need Node.js ≥ 20.19 and npm (Debian: apt-get install nodejs npm)",
    );
    let dir = provider_dir();
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "tests/oidc-provider/node_modules is missing: run `npm ci --prefix tests/oidc-provider` (scripts/test does it)"
    );
    let port = free_port();
    let config = json!({
        "clients": [{
            "client_id": "tpa",
            "client_secret": "tpa-e2e-secret",
            "redirect_uris": [redirect_uri],
        }],
        "users": {
            "alice": {"sub": "idp-alice", "preferred_username": "alice", "name": "Alice",
                      "email": "alice@example.com", "groups": ["engineers"]},
            "bob": {"sub": "idp-bob", "preferred_username": "bob", "name": "Bob",
                    "email": "bob@example.com", "groups": ["sre-leads"]},
            "carol": {"sub": "idp-carol", "preferred_username": "carol", "name": "Carol",
                      "email": "carol@example.com", "groups": ["managers"]},
        },
    });
    let path = tmp.join("provider.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut child = Command::new(node)
        .arg(dir.join("server.js"))
        .arg(port.to_string())
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node");
    let stdout = child.stdout.take().unwrap();
    let guard = Guard { child };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line.starts_with("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("oidc-provider did not start within 30 s");
    (guard, format!("http://127.0.0.1:{port}"))
}
