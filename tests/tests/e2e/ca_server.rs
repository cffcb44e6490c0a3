//! The `tpa-ca` server process: health, logs, graceful shutdown, the demo.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{CaDir, Guard, free_port, http_get, terminate, tpa_ca_bin, wait_for_port};

#[test]
fn serve_is_healthy_logs_json_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    let running = ca.serve_with(&["--log-format", "json"]);
    let (status, body) = http_get(running.addr, "/healthz");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "ok");

    let (status, body) = http_get(running.addr, "/no-such-page");
    assert_eq!(status, 404);
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["code"], "not_found");

    let exit = running.terminate();
    assert!(
        exit.success(),
        "tpa-ca serve exited with {exit} after SIGTERM"
    );
    let log = std::fs::read_to_string(ca.dir.join("serve.log")).unwrap();
    let mut messages = vec![];
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        messages.iter().any(|m| m == "tpa-ca listening"),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("SIGTERM")),
        "{messages:?}"
    );
}

#[test]
fn healthz_turns_red_when_the_key_gets_loose_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    let running = ca.serve();
    assert_eq!(http_get(running.addr, "/healthz").0, 200);
    std::fs::set_permissions(
        ca.dir.join("ca_key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (status, body) = http_get(running.addr, "/healthz");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "unavailable");
    let body = String::from_utf8_lossy(&body);
    assert!(
        !body.contains(ca.dir.to_str().unwrap()),
        "health output leaks a path: {body}"
    );
}

#[test]
fn serve_refuses_to_start_without_a_key_and_creates_none() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    std::fs::remove_file(ca.dir.join("ca_key")).unwrap();
    let out = Command::new(tpa_ca_bin())
        .args([
            "serve",
            "--config",
            ca.config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("tpa-ca init"),
        "{stderr}"
    );
    assert!(
        !ca.dir.join("ca_key").exists(),
        "serve must never generate a CA key"
    );
}

#[test]
fn demo_creates_its_directory_then_reuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run_demo = |port: u16| {
        let stdout = std::fs::File::create(tmp.path().join("demo.out")).unwrap();
        let child = Command::new(tpa_ca_bin())
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(tmp.path())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let guard = Guard { child };
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_port(addr, Duration::from_secs(20), "tpa-ca demo");
        let (status, ca_pub) = http_get(addr, "/ca.pub");
        assert_eq!(status, 200);
        // `tpa-ssh config` needs no flag against the demo: it announces the
        // example roles' host groups.
        let (status, client) = http_get(addr, "/api/v1/client-config");
        assert_eq!(status, 200);
        let client: serde_json::Value = serde_json::from_slice(&client).unwrap();
        assert_eq!(
            client["host_patterns"],
            serde_json::json!(["web-*", "db-*"])
        );
        assert!(terminate(guard).success());
        let printed = std::fs::read_to_string(tmp.path().join("demo.out")).unwrap();
        assert!(
            printed.contains(&format!("http://127.0.0.1:{port}")),
            "{printed}"
        );
        assert!(
            printed.contains("issue --config"),
            "demo must say what to try next: {printed}"
        );
        // The generated passwords of the four demo accounts, printed on every run.
        let accounts: Vec<String> = ["alice", "bob", "carol", "dave"]
            .iter()
            .map(|user| {
                printed
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{user} ")))
                    .unwrap_or_else(|| panic!("no password for {user}: {printed}"))
                    .to_owned()
            })
            .collect();
        (ca_pub, accounts)
    };
    let first = run_demo(free_port());
    assert!(tmp.path().join("tpa-demo/ca_key").exists());
    let passwords = tmp.path().join("tpa-demo/demo-passwords.txt");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&passwords).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config = std::fs::read_to_string(tmp.path().join("tpa-demo/tpa.toml")).unwrap();
    let hashes = config
        .lines()
        .filter(|l| l.starts_with("password_hash = \"$argon2id$"))
        .count();
    assert_eq!(hashes, 4, "{config}");
    let second = run_demo(free_port());
    assert_eq!(first, second, "the demo must reuse its CA key and accounts");
}

#[test]
fn audit_verify_tells_tampered_from_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    let config = ca.config.to_str().unwrap();
    let ok = crate::harness::tpa_ca(&["audit", "verify", "--config", config]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("audit trail OK: 1 events"));

    std::fs::remove_file(ca.dir.join("tpa.db")).unwrap();
    let missing = crate::harness::tpa_ca(&["audit", "verify", "--config", config]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "a trail that cannot be read is not 'tampered'"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot verify the audit trail"));
}
