//! The CA's JSON API and CA directories as the end-to-end tests use them:
//! the shared password, log in, post, a two-stage CA, a CA with roles, and
//! `tpa-ssh login` as alice.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::{CaDir, current_login, hash_password, http_send};

pub const PW: &str = "e2e flow password";

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

pub fn login(addr: SocketAddr, user: &str) -> String {
    let body = serde_json::json!({ "username": user, "password": PW }).to_string();
    let (status, body) = http_send(
        addr,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    json(&body)["token"].as_str().unwrap().to_owned()
}

pub fn post(addr: SocketAddr, token: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let (status, body) = http_send(
        addr,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    (status, json(&body))
}

/// A CA whose `hotfix-admin` role grants the current login on `web-*` after an
/// SRE lead and a manager approve, with accounts alice, bob and carol.
pub fn two_stage_ca(dir: &std::path::Path) -> CaDir {
    let ca = CaDir::init(dir, "ca");
    let login_name = current_login();
    let hash = hash_password(PW);
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        r#"
[[roles]]
name = "hotfix-admin"
logins = ["{login_name}"]
hosts = ["web-*"]
max_duration = "4h"
cert_ttl = "5m"
requestable_by = ["engineers"]
stages = [{{ group = "sre-leads", approvals = 1 }}, {{ group = "managers", approvals = 1 }}]
"#
    ));
    for (user, group) in [
        ("alice", "engineers"),
        ("bob", "sre-leads"),
        ("carol", "managers"),
    ] {
        config.push_str(&format!(
            "\n[[accounts]]\nusername = \"{user}\"\npassword_hash = \"{hash}\"\ngroups = [\"{group}\"]\n"
        ));
    }
    std::fs::write(&ca.config, config).unwrap();
    ca
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A CA with an auto-approved `web-debug` role (logins `deploy` then `root`,
/// so `root` is never the default), an `incident` role with break-glass,
/// accounts alice (engineer) and bob, and `extra` TOML.
pub fn ca_with_roles(dir: &Path, extra: &str) -> CaDir {
    let ca = CaDir::init(dir, "ca");
    let hash = hash_password(PW);
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        r#"
[[roles]]
name = "web-debug"
logins = ["deploy", "root"]
hosts = ["web-*"]
max_duration = "1h"
requestable_by = ["engineers"]
stages = [{{ group = "sre-leads" }}]
auto_approve = {{ group = "engineers", max_duration = "1h" }}

[[roles]]
name = "incident"
logins = ["root"]
hosts = ["web-*"]
max_duration = "4h"
requestable_by = ["engineers"]
stages = [{{ group = "sre-leads" }}]
break_glass = {{ max_duration = "30m" }}

[[accounts]]
username = "alice"
password_hash = "{hash}"
groups = ["engineers"]

[[accounts]]
username = "bob"
password_hash = "{hash}"
groups = ["sre-leads"]
{extra}"#
    ));
    std::fs::write(&ca.config, config).unwrap();
    ca
}

/// `tpa-ssh login --username alice --password-stdin` by `command`.
pub fn login_alice(mut command: Command, ca: SocketAddr) -> Output {
    let mut child = command
        .args([
            "login",
            "--ca",
            &format!("http://{ca}"),
            "--username",
            "alice",
        ])
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tpa-ssh login");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PW}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
