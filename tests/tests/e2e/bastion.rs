//! `ssh -J` through `tpa-bastion` to a real sshd, with a certificate obtained
//! through the request API (issue 6): the command runs on an approved host, and
//! a host the certificate does not name is refused at the bastion.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::flow::{PW, login, post};
use crate::harness::{
    CaDir, Guard, Sshd, UserKey, current_login, free_port, hash_password, http_get, require,
    terminate, tpa_bastion_bin, wait_for_port,
};

/// `ssh -F <config> <host> <command>`.
fn ssh(config: &Path, host: &str, command: &str) -> Output {
    let ssh = require(
        "ssh",
        "install openssh-client (apt-get install openssh-client)",
    );
    Command::new(ssh)
        .arg("-F")
        .arg(config)
        .args([host, command])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

#[test]
fn ssh_jump_through_the_bastion_reaches_only_approved_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let me = current_login();

    // The CA: one auto-approved role for the web hosts, one engineer.
    let ca = CaDir::init(tmp.path(), "ca");
    let hash = hash_password(PW);
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        r#"
[[roles]]
name = "web-debug"
logins = ["{me}"]
hosts = ["web-*"]
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
    let running = ca.serve();
    let ca_addr = running.addr;
    let (status, ca_pub) = http_get(ca_addr, "/ca.pub");
    assert_eq!(status, 200);

    // The host: a real sshd trusting the CA, known to the bastion as web-1 and web-2.
    let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);

    // The bastion: trusts the CA through GET /ca.pub, creates its host key.
    let bastion_dir = tmp.path().join("bastion");
    std::fs::create_dir_all(&bastion_dir).unwrap();
    let bastion_port = free_port();
    let bastion_config = bastion_dir.join("bastion.toml");
    std::fs::write(
        &bastion_config,
        format!(
            r#"listen = "127.0.0.1:{bastion_port}"
host_key_file = "host_ed25519"
ca_url = "http://{ca_addr}"

[hosts]
web-1 = "127.0.0.1:{port}"
web-2 = "127.0.0.1:{port}"
"#,
            port = sshd.port
        ),
    )
    .unwrap();
    let log = std::fs::File::create(bastion_dir.join("bastion.log")).unwrap();
    let child = Command::new(tpa_bastion_bin())
        .arg("serve")
        .arg("--config")
        .arg(&bastion_config)
        .env("TPA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tpa-bastion");
    let bastion = Guard { child };
    let bastion_addr: SocketAddr = format!("127.0.0.1:{bastion_port}").parse().unwrap();
    wait_for_port(bastion_addr, Duration::from_secs(20), "tpa-bastion");
    let bastion_log =
        || std::fs::read_to_string(bastion_dir.join("bastion.log")).unwrap_or_default();
    let bastion_pub = std::fs::read_to_string(bastion_dir.join("host_ed25519.pub")).unwrap();

    // A certificate for web-1 only, through the request API.
    let key = UserKey::generate(tmp.path(), "id_alice");
    let alice = login(ca_addr, "alice");
    let (status, submitted) = post(
        ca_addr,
        &alice,
        "/api/v1/requests",
        r#"{"role":"web-debug","hosts":["web-1"],"duration":"30m","reason":"INC-6 jump"}"#,
    );
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["request"]["id"].as_str().unwrap();
    let body = serde_json::json!({ "public_key": std::fs::read_to_string(&key.public).unwrap() })
        .to_string();
    let (status, cert) = post(
        ca_addr,
        &alice,
        &format!("/api/v1/requests/{id}/certificate"),
        &body,
    );
    assert_eq!(status, 200, "{cert}");
    std::fs::write(&key.cert, cert["certificate"].as_str().unwrap()).unwrap();

    // The client pins both host keys under the names it uses; web-N are reached
    // on port 22 through the bastion, which maps them to sshd's real port.
    let sshd_pub = std::fs::read_to_string(sshd.dir.join("host_ed25519.pub")).unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{bastion_port} {bastion_pub}web-1 {sshd_pub}web-2 {sshd_pub}"),
    )
    .unwrap();
    let ssh_config = tmp.path().join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host tpa-bastion\n  HostName 127.0.0.1\n  Port {bastion_port}\n\n\
             Host web-1 web-2\n  HostName %h\n  Port 22\n  ProxyJump tpa-bastion\n\n\
             Host *\n  User {me}\n  IdentityFile {key}\n  CertificateFile {cert}\n  IdentitiesOnly yes\n  \
             IdentityAgent none\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n  PasswordAuthentication no\n  ConnectTimeout 10\n  LogLevel ERROR\n",
            key = key.private.display(),
            cert = key.cert.display(),
            known = known_hosts.display(),
        ),
    )
    .unwrap();

    let out = ssh(&ssh_config, "web-1", "echo tpa-bastion-ok");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tpa-bastion-ok",
        "ssh -J failed: {}\nbastion log:\n{}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        bastion_log(),
        sshd.log()
    );
    assert!(
        bastion_log().contains("certificate accepted"),
        "{}",
        bastion_log()
    );

    let out = ssh(&ssh_config, "web-2", "echo tpa-bastion-web-2");
    assert!(
        !out.status.success()
            && !String::from_utf8_lossy(&out.stdout).contains("tpa-bastion-web-2"),
        "a certificate for web-1 reached web-2 through the bastion"
    );
    assert!(
        bastion_log().contains("host web-2 is not approved by the certificate"),
        "{}",
        bastion_log()
    );

    let status = terminate(bastion);
    assert!(
        status.success(),
        "tpa-bastion exited with {status} on SIGTERM"
    );
}
