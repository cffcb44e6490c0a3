//! `ssh -J` through `tpa-bastion` to a real sshd, with a certificate obtained
//! through the request API (issue 6): the command runs on an approved host, and
//! a host the certificate does not name is refused at the bastion.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// The bastion's CA token in these tests, and its SHA-256 for `[[bastions]]`.
const BASTION_TOKEN: &str = "tpab_e2e-bastion-token-for-tests-only";
const BASTION_TOKEN_SHA256: &str =
    "3dd4e3729fa031a756e09b6e0b802b4212e493f59f2065c6e56ba5e944ccae2b";

/// A CA (with `[[bastions]]`), a real sshd known as web-1 and web-2, a running
/// `tpa-bastion` with a CA token, and alice's certificate for web-1 through an
/// auto-approved request that bob (sre-leads) may revoke.
fn setup(tmp: &Path) -> Setup {
    let me = current_login();

    // The CA: one auto-approved role for the web hosts, one engineer.
    let ca = CaDir::init(tmp, "ca");
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
stages = [{{ group = "sre-leads" }}]
auto_approve = {{ group = "engineers", max_duration = "1h" }}

[[accounts]]
username = "alice"
password_hash = "{hash}"
groups = ["engineers"]

[[accounts]]
username = "bob"
password_hash = "{hash}"
groups = ["sre-leads"]

[[bastions]]
name = "bastion-e2e"
token_hash = "{BASTION_TOKEN_SHA256}"
"#
    ));
    std::fs::write(&ca.config, config).unwrap();
    let running = ca.serve();
    let ca_addr = running.addr;
    let (status, ca_pub) = http_get(ca_addr, "/ca.pub");
    assert_eq!(status, 200);

    // The host: a real sshd trusting the CA, known to the bastion as web-1 and web-2.
    let sshd = Sshd::start(&tmp.join("sshd"), &ca_pub);

    // The bastion: trusts the CA through GET /ca.pub, creates its host key.
    let bastion_dir = tmp.join("bastion");
    std::fs::create_dir_all(&bastion_dir).unwrap();
    let bastion_port = free_port();
    let bastion_config = bastion_dir.join("bastion.toml");
    std::fs::write(
        &bastion_config,
        format!(
            r#"listen = "127.0.0.1:{bastion_port}"
host_key_file = "host_ed25519"
ca_url = "http://{ca_addr}"
ca_token_file = "ca.token"
revocation_poll = "1s"

[hosts]
web-1 = "127.0.0.1:{port}"
web-2 = "127.0.0.1:{port}"
"#,
            port = sshd.port
        ),
    )
    .unwrap();
    std::fs::write(bastion_dir.join("ca.token"), BASTION_TOKEN).unwrap();
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
    let bastion_pub = std::fs::read_to_string(bastion_dir.join("host_ed25519.pub")).unwrap();

    // A certificate for web-1 only, through the request API.
    let key = UserKey::generate(tmp, "id_alice");
    let alice = login(ca_addr, "alice");
    let (status, submitted) = post(
        ca_addr,
        &alice,
        "/api/v1/requests",
        r#"{"role":"web-debug","hosts":["web-1"],"duration":"30m","reason":"INC-6 jump"}"#,
    );
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["request"]["id"].as_str().unwrap().to_owned();
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
    let known_hosts = tmp.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{bastion_port} {bastion_pub}web-1 {sshd_pub}web-2 {sshd_pub}"),
    )
    .unwrap();
    let ssh_config = tmp.join("ssh_config");
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
    Setup {
        ca,
        running,
        sshd,
        bastion,
        bastion_dir,
        ssh_config,
        request: id,
    }
}

struct Setup {
    ca: CaDir,
    running: crate::harness::RunningCa,
    sshd: Sshd,
    bastion: Guard,
    bastion_dir: std::path::PathBuf,
    ssh_config: std::path::PathBuf,
    request: String,
}

impl Setup {
    fn bastion_log(&self) -> String {
        std::fs::read_to_string(self.bastion_dir.join("bastion.log")).unwrap_or_default()
    }

    /// The `session.record` audit events of the request, from `tpa-ca audit export`.
    fn session_records(&self) -> Vec<serde_json::Value> {
        let out = crate::harness::tpa_ca(&[
            "audit",
            "export",
            "--config",
            self.ca.config.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["action"] == "session.record"
                    && e["object"] == format!("request:{}", self.request).as_str()
            })
            .collect()
    }
}

#[test]
fn ssh_jump_through_the_bastion_reaches_only_approved_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = setup(tmp.path());
    let ssh_config = &setup.ssh_config;
    let sshd = &setup.sshd;
    let bastion_log = || setup.bastion_log();

    let out = ssh(ssh_config, "web-1", "echo tpa-bastion-ok");
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

    let out = ssh(ssh_config, "web-2", "echo tpa-bastion-web-2");
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

    // The session record of the echo reaches the CA with its byte counts.
    let records = wait_for_records(&setup, 1);
    let details = &records[0]["details"];
    assert!(
        details["bytes_to_target"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert!(
        details["bytes_from_target"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert_eq!(details["target"], "web-1");
    assert_eq!(details["requester"], "alice");

    let Setup {
        bastion, running, ..
    } = setup;
    let status = terminate(bastion);
    assert!(
        status.success(),
        "tpa-bastion exited with {status} on SIGTERM"
    );
    drop(running);
}

/// Waits (bounded) until the CA holds `n` session records of the request.
fn wait_for_records(setup: &Setup, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let records = setup.session_records();
        if records.len() >= n {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "no session record at the CA; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn revoking_the_request_cuts_a_live_ssh_session_within_five_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = setup(tmp.path());
    let ssh_bin = require(
        "ssh",
        "install openssh-client (apt-get install openssh-client)",
    );
    let child = Command::new(ssh_bin)
        .arg("-F")
        .arg(&setup.ssh_config)
        .args(["web-1", "echo started; sleep 60; echo not-cut"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let mut session = Guard { child };
    // Wait (bounded) until the forward is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !setup.bastion_log().contains("forward started") {
        assert!(
            session.child.try_wait().unwrap().is_none(),
            "ssh ended before the forward started; bastion log:\n{}",
            setup.bastion_log()
        );
        assert!(
            Instant::now() < deadline,
            "no forward; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        session.child.try_wait().unwrap().is_none(),
        "ssh ended early"
    );

    let bob = login(setup.running.addr, "bob");
    let (status, revoked) = post(
        setup.running.addr,
        &bob,
        &format!("/api/v1/requests/{}/revoke", setup.request),
        r#"{"comment":"INC-6 closed"}"#,
    );
    assert_eq!(status, 200, "{revoked}");
    let revoked_at = Instant::now();
    let exited = loop {
        if let Some(status) = session.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "ssh still running 10 s after the revocation; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
    assert!(!exited.success());
    let mut stdout = String::new();
    use std::io::Read as _;
    session
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        stdout.contains("started") && !stdout.contains("not-cut"),
        "{stdout}"
    );

    let records = wait_for_records(&setup, 1);
    let details = &records[0]["details"];
    assert_eq!(details["end"], "access_revoked", "{details}");
    assert!(
        details["bytes_to_target"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert!(
        details["bytes_from_target"].as_u64().unwrap() > 0,
        "{details}"
    );
    assert!(
        setup.bastion_log().contains("access_revoked")
            || setup.bastion_log().contains("AccessRevoked")
    );
    drop(session);
}

/// Issue #7: revoking one certificate by serial (`tpa-ca revoke serial`, the
/// grant itself stays approved) reaches the bastion through the feed's
/// `revoked_serials`: the live session is cut within 5 s and a new one with the
/// same certificate is refused.
#[test]
fn revoking_the_serial_cuts_a_live_session_and_refuses_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = setup(tmp.path());
    let cert = tmp.path().join("id_alice-cert.pub");
    let shown = Command::new(require("ssh-keygen", "install openssh-client"))
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .unwrap();
    let serial = String::from_utf8_lossy(&shown.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial: ").map(str::to_owned))
        .expect("ssh-keygen -L shows the serial");
    let child = Command::new(require("ssh", "install openssh-client"))
        .arg("-F")
        .arg(&setup.ssh_config)
        .args(["web-1", "echo started; sleep 60; echo not-cut"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    let mut session = Guard { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !setup.bastion_log().contains("forward started") {
        assert!(
            session.child.try_wait().unwrap().is_none(),
            "ssh ended before the forward started; bastion log:\n{}",
            setup.bastion_log()
        );
        assert!(
            Instant::now() < deadline,
            "no forward; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = crate::harness::tpa_ca(&[
        "revoke",
        "serial",
        &serial,
        "--reason",
        "INC-7 key copied",
        "--admin",
        "oncall",
        "--config",
        setup.ca.config.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    let exited = loop {
        if let Some(status) = session.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "ssh still running 10 s after the revocation; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(revoked_at.elapsed() < Duration::from_secs(5));
    assert!(!exited.success());
    let again = ssh(&setup.ssh_config, "web-1", "echo again-ok");
    assert!(
        !again.status.success() && !String::from_utf8_lossy(&again.stdout).contains("again-ok"),
        "a revoked serial got through the bastion"
    );
    assert!(
        setup
            .bastion_log()
            .contains(&format!("serial {serial} is revoked")),
        "bastion log:\n{}",
        setup.bastion_log()
    );
    drop(session);
}
