//! Revocation reaches plain sshd (issue #7): `tpa-ca revoke serial|user` on the
//! CA's host, the KRL written by `tpa-ca krl --out` (atomic replace) and served
//! by `GET /krl`, a real sshd with `RevokedKeys` pointing at that file, and
//! `ssh-keygen -Q` for serial and key-id revocations.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::harness::{
    CaDir, Sshd, UserKey, current_login, hash_password, http_get, require, tpa_ca,
};
use crate::harness::{PW, login, post, two_stage_ca};

/// A grant of hotfix-admin on `host` for `user`, approved by bob and carol.
fn grant(addr: SocketAddr, user: &str, host: &str) -> String {
    let token = login(addr, user);
    let body = format!(
        r#"{{"role":"hotfix-admin","hosts":["{host}"],"duration":"1h","reason":"INC-7 {host}"}}"#
    );
    let (status, submitted) = post(addr, &token, "/api/v1/requests", &body);
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["request"]["id"].as_str().unwrap().to_owned();
    for approver in ["bob", "carol"] {
        let t = login(addr, approver);
        let (status, r) = post(addr, &t, &format!("/api/v1/requests/{id}/approve"), "");
        assert_eq!(status, 200, "{r}");
    }
    id
}

/// A certificate of request `id` for `key`, written to `key.cert`; returns its serial.
fn certificate(addr: SocketAddr, user: &str, id: &str, key: &UserKey) -> String {
    let token = login(addr, user);
    let public_key = std::fs::read_to_string(&key.public).unwrap();
    let body = serde_json::json!({ "public_key": public_key }).to_string();
    let (status, cert) = post(
        addr,
        &token,
        &format!("/api/v1/requests/{id}/certificate"),
        &body,
    );
    assert_eq!(status, 200, "{cert}");
    std::fs::write(&key.cert, cert["certificate"].as_str().unwrap()).unwrap();
    cert["serial"].as_str().unwrap().to_owned()
}

fn tpa_ca_ok(args: &[&str]) -> String {
    let out = tpa_ca(args);
    assert!(
        out.status.success(),
        "tpa-ca {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ssh-keygen -Q -f KRL FILE`: true when revoked.
fn revoked_per_ssh_keygen(krl: &Path, file: &Path) -> bool {
    let out = Command::new(require("ssh-keygen", "install openssh-client"))
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => false,
        Some(1) if text.contains("REVOKED") => true,
        other => panic!(
            "ssh-keygen -Q: {other:?} {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn logs_in(sshd: &Sshd, key: &UserKey, login: &str) -> bool {
    let out = sshd.ssh(key, login, "echo in-ok");
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "in-ok"
}

#[test]
fn serial_and_user_revocations_reach_sshd_through_the_krl_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ca: CaDir = two_stage_ca(tmp.path());
    // A second engineer whose access must survive alice's revocation.
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        "\n[[accounts]]\nusername = \"dan\"\npassword_hash = \"{}\"\ngroups = [\"engineers\"]\n",
        hash_password(PW)
    ));
    std::fs::write(&ca.config, config).unwrap();
    let running = ca.serve();
    let addr = running.addr;
    let me = current_login();
    let config = ca.config.to_str().unwrap().to_owned();

    let keys: Vec<UserKey> = ["k1", "k2", "k3", "k4"]
        .iter()
        .map(|n| UserKey::generate(tmp.path(), n))
        .collect();
    let r1 = grant(addr, "alice", "web-1");
    let s1 = certificate(addr, "alice", &r1, &keys[0]);
    certificate(addr, "alice", &r1, &keys[1]); // a sibling of the same request
    let r2 = grant(addr, "alice", "web-2");
    certificate(addr, "alice", &r2, &keys[2]);
    let r3 = grant(addr, "dan", "web-3");
    certificate(addr, "dan", &r3, &keys[3]);

    // The host's KRL file, replaced atomically by `tpa-ca krl --out`.
    let krl = tmp.path().join("host").join("tpa.krl");
    std::fs::create_dir_all(krl.parent().unwrap()).unwrap();
    tpa_ca_ok(&["krl", "--config", &config, "--out", krl.to_str().unwrap()]);
    let (_, ca_pub) = http_get(addr, "/ca.pub");
    let sshd = Sshd::start_with_options(&tmp.path().join("sshd"), &ca_pub, None, Some(&krl));
    for key in &keys {
        assert!(logs_in(&sshd, key, &me), "sshd log:\n{}", sshd.log());
    }

    // 1. One certificate by serial: only it is refused, its sibling still works.
    let out = tpa_ca_ok(&[
        "revoke",
        "serial",
        &s1,
        "--reason",
        "INC-7 key copied",
        "--admin",
        "oncall",
        "--config",
        &config,
    ]);
    assert!(out.contains("1 certificate(s)"), "{out}");
    tpa_ca_ok(&["krl", "--config", &config, "--out", krl.to_str().unwrap()]);
    assert!(revoked_per_ssh_keygen(&krl, &keys[0].cert));
    assert!(!revoked_per_ssh_keygen(&krl, &keys[1].cert));
    assert!(!logs_in(&sshd, &keys[0], &me), "a revoked serial logged in");
    assert!(sshd.log().contains("revoked"), "sshd log:\n{}", sshd.log());
    assert!(logs_in(&sshd, &keys[1], &me), "sshd log:\n{}", sshd.log());

    // 2. The user: every grant and certificate of alice; dan keeps his access.
    let out = tpa_ca_ok(&[
        "revoke",
        "user",
        "alice",
        "--reason",
        "offboarding",
        "--admin",
        "oncall",
        "--config",
        &config,
    ]);
    assert!(out.contains("2 grant(s) ended"), "{out}");
    tpa_ca_ok(&["krl", "--config", &config, "--out", krl.to_str().unwrap()]);
    for key in &keys[..3] {
        assert!(revoked_per_ssh_keygen(&krl, &key.cert));
        assert!(
            !logs_in(&sshd, key, &me),
            "a revoked user's certificate logged in"
        );
    }
    assert!(!revoked_per_ssh_keygen(&krl, &keys[3].cert));
    assert!(logs_in(&sshd, &keys[3], &me), "sshd log:\n{}", sshd.log());

    // 3. Key-id revocation: a certificate with the key id of a revoked request
    // but a serial the CA never issued is revoked too (signed here with the CA
    // key by ssh-keygen itself, as a leaked-key forgery would be).
    let forged = UserKey::generate(tmp.path(), "k5");
    let key_id = format!("tpa:request={r2}:user=alice");
    let out = Command::new(require("ssh-keygen", "install openssh-client"))
        .args(["-q", "-s"])
        .arg(ca.dir.join("ca_key"))
        .args(["-I", &key_id, "-n", &me, "-z", "4242", "-V", "-5m:+5m"])
        .arg(&forged.public)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(revoked_per_ssh_keygen(&krl, &forged.cert));
    assert!(!logs_in(&sshd, &forged, &me), "a revoked key id logged in");

    // GET /krl serves the same revocations, with its version in a header.
    let (status, served) = http_get(addr, "/krl");
    assert_eq!(status, 200);
    let served_path = tmp.path().join("served.krl");
    std::fs::write(&served_path, served).unwrap();
    for key in &keys[..3] {
        assert!(revoked_per_ssh_keygen(&served_path, &key.cert));
    }
    assert!(!revoked_per_ssh_keygen(&served_path, &keys[3].cert));
}
