//! The whole flow with real processes: a request through the API, two approvals
//! from distinct groups, a certificate for the engineer's own key, and a login
//! to a real sshd that trusts only the CA's `/ca.pub`.

use crate::harness::{PW, json, login, post, two_stage_ca};

use crate::harness::{CaDir, Sshd, UserKey, current_login, hash_password, http_get};

#[test]
fn request_two_approvals_certificate_then_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let login_name = current_login();
    let running = ca.serve();
    let addr = running.addr;
    let (_, ca_pub) = http_get(addr, "/ca.pub");
    let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
    let key = UserKey::generate(tmp.path(), "id_alice");

    let (alice, bob, carol) = (
        login(addr, "alice"),
        login(addr, "bob"),
        login(addr, "carol"),
    );
    let (status, submitted) = post(
        addr,
        &alice,
        "/api/v1/requests",
        r#"{"role":"hotfix-admin","hosts":["web-1"],"duration":"1h","reason":"INC-1 disk full"}"#,
    );
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["request"]["id"].as_str().unwrap().to_owned();

    let public_key = std::fs::read_to_string(&key.public).unwrap();
    let cert_body = serde_json::json!({ "public_key": public_key }).to_string();
    let cert_path = format!("/api/v1/requests/{id}/certificate");
    let (status, refused) = post(addr, &alice, &cert_path, &cert_body);
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("not_approved")),
        "no approval, no certificate"
    );

    let (status, _) = post(addr, &bob, &format!("/api/v1/requests/{id}/approve"), "");
    assert_eq!(status, 200);
    let (status, approved) = post(addr, &carol, &format!("/api/v1/requests/{id}/approve"), "");
    assert_eq!(
        (status, approved["state"].as_str()),
        (200, Some("approved"))
    );

    let (status, cert) = post(addr, &alice, &cert_path, &cert_body);
    assert_eq!(status, 200, "{cert}");
    std::fs::write(&key.cert, cert["certificate"].as_str().unwrap()).unwrap();
    let out = sshd.ssh(&key, &login_name, "echo tpa-flow-ok");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tpa-flow-ok",
        "ssh failed: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    // sshd logged the key id that names the request.
    assert!(
        sshd.log().contains(&format!("tpa:request={id}:user=alice")),
        "{}",
        sshd.log()
    );

    // The audit trail holds the whole story and verifies.
    let out = crate::harness::tpa_ca(&["audit", "verify", "--config", ca.config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::harness::tpa_ca(&["audit", "export", "--config", ca.config.to_str().unwrap()]);
    let actions: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| json(l.as_bytes()))
        .filter(|e| {
            e["object"] == format!("request:{id}") || e["details"]["request_id"] == id.as_str()
        })
        .map(|e| {
            format!(
                "{}/{}",
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "request.submit/success",
            "cert.issue/denied",
            "request.approve/success",
            "request.approve/success",
            "cert.issue/success"
        ]
    );
}

/// Host-scoped principals: every host trusts the same CA, yet a certificate
/// approved for the web group does not open a db host.
#[test]
fn host_scoped_certificate_opens_only_its_group() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    let me = current_login();
    let hash = hash_password(PW);
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        r#"
[host_groups]
web = ["web-*"]
db = ["db-*"]

[[roles]]
name = "scoped-debug"
logins = ["{me}"]
hosts = ["@web", "@db"]
host_scoped_principals = true
max_duration = "1h"
requestable_by = ["engineers"]
auto_approve = {{ group = "engineers", max_duration = "1h" }}

[[accounts]]
username = "alice"
password_hash = "{hash}"
groups = ["engineers"]
"#
    ));
    std::fs::write(&ca.config, config).unwrap();
    let cfg = ca.config.to_str().unwrap();

    // What each host group installs, one file per login.
    let principals_of = |group: &str| {
        let out = crate::harness::tpa_ca(&[
            "principals",
            "--config",
            cfg,
            "--group",
            group,
            "--login",
            &me,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(principals_of("web").trim(), format!("web:{me}"));
    let unknown = crate::harness::tpa_ca(&["principals", "--config", cfg, "--group", "mail"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("groups that do: db, web"));

    let running = ca.serve();
    let addr = running.addr;
    let (_, ca_pub) = http_get(addr, "/ca.pub");
    let mut hosts = Vec::new();
    for group in ["web", "db"] {
        let principals = tmp.path().join(format!("{group}-principals"));
        std::fs::create_dir_all(&principals).unwrap();
        std::fs::write(principals.join(&me), principals_of(group)).unwrap();
        hosts.push(Sshd::start_with_principals(
            &tmp.path().join(format!("sshd-{group}")),
            &ca_pub,
            Some(&principals),
        ));
    }
    let key = UserKey::generate(tmp.path(), "id_alice");
    let alice = login(addr, "alice");
    let (status, submitted) = post(
        addr,
        &alice,
        "/api/v1/requests",
        r#"{"role":"scoped-debug","hosts":["web-1"],"reason":"look"}"#,
    );
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["request"]["id"].as_str().unwrap();
    let body = serde_json::json!({ "public_key": std::fs::read_to_string(&key.public).unwrap() })
        .to_string();
    let (status, cert) = post(
        addr,
        &alice,
        &format!("/api/v1/requests/{id}/certificate"),
        &body,
    );
    assert_eq!(status, 200, "{cert}");
    assert_eq!(cert["principals"], serde_json::json!([format!("web:{me}")]));
    std::fs::write(&key.cert, cert["certificate"].as_str().unwrap()).unwrap();

    let web = hosts[0].ssh(&key, &me, "echo web-ok");
    assert_eq!(
        String::from_utf8_lossy(&web.stdout).trim(),
        "web-ok",
        "sshd log:\n{}",
        hosts[0].log()
    );
    let db = hosts[1].ssh(&key, &me, "echo db-ok");
    assert!(
        !db.status.success() && !String::from_utf8_lossy(&db.stdout).contains("db-ok"),
        "a web certificate opened a db host"
    );
}

/// Revocation reaches plain sshd: the KRL from `GET /krl` names the revoked
/// request's certificate (ssh-keygen -Q agrees) and sshd with `RevokedKeys`
/// refuses it, while a certificate of another, active request still logs in.
#[test]
fn revoked_certificate_is_in_the_krl_and_refused_by_sshd() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let running = ca.serve();
    let addr = running.addr;
    let me = current_login();
    let (alice, bob, carol) = (
        login(addr, "alice"),
        login(addr, "bob"),
        login(addr, "carol"),
    );
    let grant = |host: &str, key: &UserKey| {
        let body = format!(
            r#"{{"role":"hotfix-admin","hosts":["{host}"],"duration":"1h","reason":"INC-2 krl"}}"#
        );
        let (status, submitted) = post(addr, &alice, "/api/v1/requests", &body);
        assert_eq!(status, 201, "{submitted}");
        let id = submitted["request"]["id"].as_str().unwrap().to_owned();
        post(addr, &bob, &format!("/api/v1/requests/{id}/approve"), "");
        post(addr, &carol, &format!("/api/v1/requests/{id}/approve"), "");
        let public_key = std::fs::read_to_string(&key.public).unwrap();
        let body = serde_json::json!({ "public_key": public_key }).to_string();
        let (status, cert) = post(
            addr,
            &alice,
            &format!("/api/v1/requests/{id}/certificate"),
            &body,
        );
        assert_eq!(status, 200, "{cert}");
        std::fs::write(&key.cert, cert["certificate"].as_str().unwrap()).unwrap();
        id
    };
    let revoked_key = UserKey::generate(tmp.path(), "id_revoked");
    let kept_key = UserKey::generate(tmp.path(), "id_kept");
    let revoked_id = grant("web-1", &revoked_key);
    grant("web-2", &kept_key);

    let (status, before) = http_get(addr, "/krl");
    assert_eq!(status, 200);
    let (status, body) = post(
        addr,
        &bob,
        &format!("/api/v1/requests/{revoked_id}/revoke"),
        r#"{"comment":"INC-2 closed"}"#,
    );
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("revoked")),
        "{body}"
    );
    let (_, krl) = http_get(addr, "/krl");
    assert_ne!(krl, before, "the KRL changed with the revocation");
    let krl_path = tmp.path().join("revoked.krl");
    std::fs::write(&krl_path, &krl).unwrap();

    let query = |cert: &std::path::Path| {
        std::process::Command::new(crate::harness::require(
            "ssh-keygen",
            "install openssh-client",
        ))
        .arg("-Q")
        .arg("-f")
        .arg(&krl_path)
        .arg(cert)
        .output()
        .unwrap()
    };
    let revoked = query(&revoked_key.cert);
    assert!(
        !revoked.status.success(),
        "ssh-keygen -Q must report the revoked certificate"
    );
    assert!(
        String::from_utf8_lossy(&revoked.stdout).contains("REVOKED"),
        "{}",
        String::from_utf8_lossy(&revoked.stdout)
    );
    let kept = query(&kept_key.cert);
    assert!(
        kept.status.success(),
        "{}",
        String::from_utf8_lossy(&kept.stdout)
    );

    let (_, ca_pub) = http_get(addr, "/ca.pub");
    let sshd = crate::harness::Sshd::start_with_options(
        &tmp.path().join("sshd"),
        &ca_pub,
        None,
        Some(&krl_path),
    );
    let out = sshd.ssh(&kept_key, &me, "echo kept-ok");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "kept-ok",
        "sshd log:\n{}",
        sshd.log()
    );
    let out = sshd.ssh(&revoked_key, &me, "echo revoked-ok");
    assert!(
        !out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("revoked-ok"),
        "a revoked certificate logged in"
    );
    assert!(sshd.log().contains("revoked"), "sshd log:\n{}", sshd.log());
}
