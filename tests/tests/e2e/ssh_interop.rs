//! Certificates from `tpa-ca issue` against a real sshd that trusts `GET /ca.pub`.

use std::time::Duration;

use crate::harness::{CaDir, RunningCa, Sshd, UserKey, current_login, http_get, lines, require};

/// A CA serving /ca.pub, an sshd trusting exactly that, and a user key.
struct Env {
    tmp: tempfile::TempDir,
    ca: CaDir,
    _running: RunningCa,
    sshd: Sshd,
    key: UserKey,
    login: String,
}

impl Env {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CaDir::init(tmp.path(), "ca");
        let running = ca.serve();
        let (status, ca_pub) = http_get(running.addr, "/ca.pub");
        assert_eq!(status, 200, "GET /ca.pub");
        let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
        let key = UserKey::generate(tmp.path(), "id_user");
        Self {
            ca,
            _running: running,
            sshd,
            key,
            login: current_login(),
            tmp,
        }
    }

    fn assert_login_works(&self) {
        let out = self.sshd.ssh(&self.key, &self.login, "echo tpa-ok");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "tpa-ok",
            "ssh with the certificate failed: status {:?}\nstdout: {}\nstderr: {}\nsshd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sshd.log()
        );
    }

    fn assert_login_refused(&self, why_in_sshd_log: &str) {
        let out = self.sshd.ssh(&self.key, &self.login, "echo tpa-ok");
        assert!(
            !out.status.success(),
            "ssh should have been refused but succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("tpa-ok"));
        // sshd writes its reasons after the connection closes; give it a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !self.sshd.log().contains(why_in_sshd_log) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            self.sshd.log().contains(why_in_sshd_log),
            "sshd log does not mention {why_in_sshd_log:?}:\n{}",
            self.sshd.log()
        );
    }
}

#[test]
fn issued_certificate_logs_in_and_runs_a_command() {
    let env = Env::start();
    env.ca.issue_ok(
        &env.key,
        &[
            "--principal",
            &env.login,
            "--ttl",
            "5m",
            "--reason",
            "e2e login",
        ],
    );
    env.assert_login_works();
}

#[test]
fn without_a_certificate_login_is_refused() {
    let env = Env::start();
    // The key alone is not in any authorized_keys file.
    env.assert_login_refused("Connection closed by authenticating user");
}

#[test]
fn expired_certificate_is_refused() {
    let env = Env::start();
    env.ca.issue_ok(
        &env.key,
        &[
            "--principal",
            &env.login,
            "--ttl",
            "1s",
            "--reason",
            "e2e expiry",
        ],
    );
    std::thread::sleep(Duration::from_millis(2100));
    env.assert_login_refused("expired");
}

#[test]
fn certificate_for_another_login_is_refused() {
    let env = Env::start();
    env.ca.issue_ok(
        &env.key,
        &[
            "--principal",
            "someone-else",
            "--ttl",
            "5m",
            "--reason",
            "e2e principal",
        ],
    );
    env.assert_login_refused("name is not a listed principal");
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let env = Env::start();
    let other = CaDir::init(env.tmp.path(), "other-ca");
    other.issue_ok(
        &env.key,
        &[
            "--principal",
            &env.login,
            "--ttl",
            "5m",
            "--reason",
            "e2e other CA",
        ],
    );
    env.assert_login_refused("Failed publickey for");
}

#[test]
fn force_command_from_the_certificate_is_what_runs() {
    let env = Env::start();
    env.ca.issue_ok(
        &env.key,
        &[
            "--principal",
            &env.login,
            "--ttl",
            "5m",
            "--reason",
            "e2e forced",
            "--force-command",
            "echo forced-by-cert",
        ],
    );
    let out = env.sshd.ssh(&env.key, &env.login, "echo tpa-ok");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "forced-by-cert",
        "sshd log:\n{}",
        env.sshd.log()
    );
}

#[test]
fn source_address_outside_the_certificate_is_refused() {
    let env = Env::start();
    env.ca.issue_ok(
        &env.key,
        &[
            "--principal",
            &env.login,
            "--ttl",
            "5m",
            "--reason",
            "e2e source",
            "--source-address",
            "192.0.2.0/24",
        ],
    );
    env.assert_login_refused("not from a permitted source address");
}

#[test]
fn rotation_overlap_trusts_the_previous_ca_key() {
    // A host that trusts /ca.pub accepts certificates from the current key and from
    // a previous key listed in ca.extra_trusted_public_key_files.
    let tmp = tempfile::tempdir().unwrap();
    let old = CaDir::init(tmp.path(), "old-ca");
    let new = CaDir::init(tmp.path(), "new-ca");
    let config = std::fs::read_to_string(&new.config).unwrap().replace(
        "extra_trusted_public_key_files = []",
        &format!(
            "extra_trusted_public_key_files = [{:?}]",
            old.dir.join("ca_key.pub").display().to_string()
        ),
    );
    std::fs::write(&new.config, config).unwrap();
    let running = new.serve();
    let (_, ca_pub) = http_get(running.addr, "/ca.pub");
    assert_eq!(lines(&ca_pub).len(), 2, "both keys published");
    let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
    let key = UserKey::generate(tmp.path(), "id_user");
    let login = current_login();
    for ca in [&old, &new] {
        ca.issue_ok(
            &key,
            &[
                "--principal",
                &login,
                "--ttl",
                "5m",
                "--reason",
                "e2e rotation",
            ],
        );
        let out = sshd.ssh(&key, &login, "echo tpa-ok");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "tpa-ok",
            "sshd log:\n{}",
            sshd.log()
        );
    }
}

#[test]
fn ssh_keygen_shows_exactly_the_requested_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    let key = UserKey::generate(tmp.path(), "id_user");
    let before = chrono_now();
    let cert = ca.issue_ok(
        &key,
        &[
            "--principal",
            "deploy",
            "--principal",
            "app.ops",
            "--ttl",
            "10m",
            "--reason",
            "e2e fields",
            "--extension",
            "permit-pty",
            "--extension",
            "permit-port-forwarding",
            "--admin",
            "alice",
        ],
    );
    let after = chrono_now();
    let keygen = require("ssh-keygen", "install openssh-client");
    let out = std::process::Command::new(keygen)
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let section = |name: &str| -> Vec<String> {
        let mut it = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(name));
        let header = it.next().unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        if header.contains("(none)") {
            return vec![];
        }
        it.take_while(|l| l.starts_with("                "))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    assert!(text.contains("user certificate"), "{text}");
    assert!(
        text.contains("Key ID: \"tpa:admin-issue:user=alice\""),
        "{text}"
    );
    assert_eq!(section("Principals:"), ["app.ops", "deploy"]);
    assert_eq!(
        section("Extensions:"),
        ["permit-port-forwarding", "permit-pty"]
    );
    assert_eq!(section("Critical Options:"), Vec::<String>::new());
    let serial: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(serial, 0);
    // Valid: from <now-60s> to <now+10m>, in the machine's local time as ssh-keygen prints it.
    let valid = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Valid: from "))
        .unwrap();
    let (from, to) = valid.split_once(" to ").unwrap();
    let (from, to) = (local_to_unix(from), local_to_unix(to));
    assert_eq!(to - from, 660, "{valid}");
    assert!(
        from >= before - 61 && from <= after - 59,
        "valid_after {from} not now-60s ({before}..{after})"
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// ssh-keygen prints local time as `YYYY-MM-DDTHH:MM:SS`; `date -d` converts it back.
fn local_to_unix(text: &str) -> i64 {
    let out = std::process::Command::new("date")
        .args(["-d", text, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("cannot parse time {text:?}"))
}
