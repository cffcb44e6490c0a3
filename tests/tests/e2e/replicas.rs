//! Issue 15: two `tpa-ca serve` replicas (A and B) on one real PostgreSQL,
//! sharing the CA key and configuration. A request submitted on A and
//! approved on both wakes a `tpa-ssh request --wait` long-polling B; the
//! certificate from A works through a bastion fed by A; a revocation on B
//! cuts that bastion's live session; both replicas serve the same KRL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tpa_testkit::postgres_server::PgServer;

use crate::harness::{
    BASTION_TOKEN, BASTION_TOKEN_SHA256, Balancer, CaDir, Guard, RunningCa, Sshd, current_login,
    free_port, http_get, http_send, login, login_alice, move_to_postgres, post, require,
    start_bastion, tpa_ssh_bin, two_stage_ca,
};

/// Starts replica `name` of `ca` on a free port, logging to `serve-<name>.log`.
pub fn replica(ca: &CaDir, name: &str) -> RunningCa {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    ca.serve_logged(addr, &[], &format!("serve-{name}.log"))
}

/// `tpa-ssh ARGS` with a private HOME, against `ca_url`.
fn tpa_ssh(home: &Path, ca_url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(tpa_ssh_bin());
    c.args(args)
        .env("HOME", home)
        .env("USER", current_login())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("SSH_AUTH_SOCK")
        .env("TPA_CA_URL", ca_url);
    c
}

/// The id of the first request in `approver`'s inbox on `addr` (bounded wait).
fn pending_in_inbox(addr: SocketAddr, token: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_send(
            addr,
            "GET",
            "/api/v1/requests?scope=inbox",
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(id) = v["requests"][0]["id"].as_str() {
            return id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached the inbox"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The load balancer's rule in this test: submitting a request and fetching
/// a certificate go to A (backend 0), everything else (login, the waits) to B.
fn submit_and_certificate_on_a(request_line: &str) -> usize {
    let is_submit = request_line.starts_with("POST /api/v1/requests ");
    let is_certificate =
        request_line.starts_with("POST /api/v1/requests/") && request_line.contains("/certificate");
    if is_submit || is_certificate { 0 } else { 1 }
}

/// `GET /krl`'s `X-KRL-Version` from `addr`.
fn krl_version(addr: SocketAddr) -> String {
    let r = tpa_testkit::http_send_blocking(addr, "GET", "/krl", &[], "", Duration::from_secs(40));
    assert_eq!(r.status, 200, "{}", r.body);
    r.header("x-krl-version")
        .expect("X-KRL-Version header")
        .to_owned()
}

/// Waits (bounded) for `child` to exit; returns whether it succeeded.
fn wait_exit(child: &mut Guard, within: Duration, what: &str) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            return status.success();
        }
        assert!(
            Instant::now() < deadline,
            "{what} still running after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The bastion's directory and configuration: trusts and reports to `ca`,
/// knows sshd as web-1.
fn bastion_config(dir: &Path, ca: SocketAddr, bastion: SocketAddr, sshd_port: u16) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("bastion.toml"),
        format!(
            "listen = \"{bastion}\"\nhost_key_file = \"host_ed25519\"\nca_url = \"http://{ca}\"\n\
             ca_token_file = \"ca.token\"\nrevocation_poll = \"1s\"\n\n[hosts]\nweb-1 = \"127.0.0.1:{sshd_port}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("ca.token"), BASTION_TOKEN).unwrap();
    dir.to_owned()
}

// issue 15: the flow across two replicas on one PostgreSQL.
#[test]
fn a_request_flows_across_two_replicas_and_a_revocation_on_b_cuts_the_session_fed_by_a() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = two_stage_ca(tmp.path());
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        "\n[[bastions]]\nname = \"bastion-e2e\"\ntoken_hash = \"{BASTION_TOKEN_SHA256}\"\n"
    ));
    std::fs::write(&ca.config, config).unwrap();
    let _db = move_to_postgres(PgServer::shared(), &ca);
    // Same configuration, same CA key, same database; only the port differs.
    let a = replica(&ca, "a");
    let b = replica(&ca, "b");
    let (status, ca_pub) = http_get(a.addr, "/ca.pub");
    assert_eq!(status, 200);
    assert_eq!(
        http_get(b.addr, "/ca.pub").1,
        ca_pub,
        "the replicas' CA keys differ"
    );

    // A real sshd trusting the CA, and a bastion whose CA is A.
    let sshd = Sshd::start(&tmp.path().join("sshd"), &ca_pub);
    let bastion_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let bastion_dir = bastion_config(&tmp.path().join("bastion"), a.addr, bastion_addr, sshd.port);
    let _bastion = start_bastion(&bastion_dir, bastion_addr);
    let bastion_log =
        || std::fs::read_to_string(bastion_dir.join("bastion.log")).unwrap_or_default();

    // alice's CLI talks to the load balancer; logs in (on B).
    let lb = Balancer::start(vec![a.addr, b.addr], submit_and_certificate_on_a);
    let ca_url = format!("http://{}", lb.addr);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = login_alice(tpa_ssh(&home, &ca_url, &[]), lb.addr);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `tpa-ssh request --wait`: submitted on A, long-polling B.
    let wait_log = tmp.path().join("wait.log");
    let child = tpa_ssh(
        &home,
        &ca_url,
        &[
            "request",
            "--role",
            "hotfix-admin",
            "--host",
            "web-1",
            "--for",
            "1h",
            "--reason",
            "INC-15 replicas",
            "--wait",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&wait_log).unwrap())
    .spawn()
    .unwrap();
    let mut waiter = Guard { child };
    let waiter_output = || std::fs::read_to_string(&wait_log).unwrap_or_default();

    // bob approves on B, carol on A.
    let bob = login(b.addr, "bob");
    let id = pending_in_inbox(b.addr, &bob);
    let (status, r) = post(b.addr, &bob, &format!("/api/v1/requests/{id}/approve"), "");
    assert_eq!(status, 200, "{r}");
    let carol = login(a.addr, "carol");
    // The last decision is sent just after a fresh long poll opened on B:
    // each poll stays open up to 5 s, so this one is still waiting when the
    // decision commits (unless the approval takes over 4 s).
    let waits = || {
        lb.routed()
            .iter()
            .filter(|r| r.request_line.contains("/wait"))
            .count()
    };
    let before = waits();
    let deadline = Instant::now() + Duration::from_secs(30);
    while waits() == before {
        assert!(
            Instant::now() < deadline,
            "no new wait reached the balancer: {}",
            waiter_output()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    let decision_sent = Instant::now();
    let (status, r) = post(
        a.addr,
        &carol,
        &format!("/api/v1/requests/{id}/approve"),
        "",
    );
    let decided = Instant::now();
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "approved", "{r}");

    // The waiter wakes (it fetches the certificate from A) and exits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let woke = loop {
        if let Some(c) = lb
            .routed()
            .into_iter()
            .find(|r| r.request_line.contains("/certificate"))
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the waiter never woke: {}",
            waiter_output()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let wake = woke.at.saturating_duration_since(decided);
    println!(
        "decision on A -> waiter on B asks for its certificate: {wake:?} after the approval's answer \
         ({:?} after it was sent)",
        woke.at.saturating_duration_since(decision_sent)
    );
    assert!(
        wait_exit(
            &mut waiter,
            Duration::from_secs(60),
            "tpa-ssh request --wait"
        ),
        "{}",
        waiter_output()
    );
    let routed = lb.routed();
    let on = |needle: &str| -> Vec<usize> {
        routed
            .iter()
            .filter(|r| r.request_line.contains(needle))
            .map(|r| r.backend)
            .collect()
    };
    assert_eq!(on("POST /api/v1/requests "), vec![0], "{routed:?}");
    assert_eq!(on("/certificate"), vec![0], "{routed:?}");
    assert!(
        on("/wait").iter().all(|&backend| backend == 1),
        "{routed:?}"
    );
    // Woken by the decision itself (LISTEN/NOTIFY across replicas), not by
    // its long poll timing out and asking again: no wait began after the
    // decision was sent, and the wake came well within one poll (5 s).
    assert!(
        !routed
            .iter()
            .any(|r| r.request_line.contains("/wait") && r.at > decision_sent),
        "a wait began after the decision (the long poll was not woken): {routed:?}"
    );
    assert!(
        wake < Duration::from_millis(2500),
        "woke {wake:?} after the decision"
    );

    // The certificate from A logs in through the bastion fed by A.
    let key = home.join(".local/share/tpa/id_ed25519");
    let cert = home.join(".local/share/tpa/id_ed25519-cert.pub");
    assert!(cert.exists(), "{}", waiter_output());
    let ssh_config = tmp.path().join("ssh_config");
    let bastion_pub = std::fs::read_to_string(bastion_dir.join("host_ed25519.pub")).unwrap();
    let sshd_pub = std::fs::read_to_string(sshd.dir.join("host_ed25519.pub")).unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {bastion_pub}web-1 {sshd_pub}",
            bastion_addr.port()
        ),
    )
    .unwrap();
    std::fs::write(
        &ssh_config,
        format!(
            "Host tpa-bastion\n  HostName 127.0.0.1\n  Port {port}\n\n\
             Host web-1\n  HostName %h\n  Port 22\n  ProxyJump tpa-bastion\n\n\
             Host *\n  User {me}\n  IdentityFile {key}\n  CertificateFile {cert}\n  IdentitiesOnly yes\n  \
             IdentityAgent none\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n  PasswordAuthentication no\n  ConnectTimeout 10\n  LogLevel INFO\n",
            port = bastion_addr.port(),
            me = current_login(),
            key = key.display(),
            cert = cert.display(),
            known = known_hosts.display(),
        ),
    )
    .unwrap();
    let child = Command::new(require("ssh", "install openssh-client"))
        .arg("-F")
        .arg(&ssh_config)
        .args(["web-1", "echo started; sleep 60; echo not-cut"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut session = Guard { child };
    // The session is live once the remote command has printed (the forward
    // at the bastion opens before the inner handshake with sshd).
    let stdout = Arc::new(Mutex::new(String::new()));
    let mut pipe = session.child.stdout.take().unwrap();
    let collected = stdout.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = std::io::Read::read(&mut pipe, &mut buf) {
            collected
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stdout.lock().unwrap().contains("started") {
        assert!(
            session.child.try_wait().unwrap().is_none(),
            "ssh ended before the session started; bastion log:\n{}",
            bastion_log()
        );
        assert!(
            Instant::now() < deadline,
            "no session; bastion log:\n{}",
            bastion_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        bastion_log().contains("forward started"),
        "{}",
        bastion_log()
    );

    // bob revokes on B; the bastion, which asks A, cuts the session.
    let krl_before = krl_version(a.addr);
    let (status, r) = post(
        b.addr,
        &bob,
        &format!("/api/v1/requests/{id}/revoke"),
        r#"{"comment":"INC-15 closed"}"#,
    );
    assert_eq!(status, 200, "{r}");
    let revoked = Instant::now();
    let ok = wait_exit(
        &mut session,
        Duration::from_secs(20),
        "the revoked ssh session",
    );
    let cut = revoked.elapsed();
    println!("revocation on B -> session through the bastion fed by A cut after {cut:?}");
    assert!(!ok, "the revoked session ended successfully");
    // 5 s promised; 2 s of margin for a loaded machine.
    assert!(
        cut < Duration::from_secs(7),
        "cut after {cut:?}; bastion log:\n{}",
        bastion_log()
    );
    reader.join().unwrap();
    let stdout = stdout.lock().unwrap().clone();
    assert!(
        stdout.contains("started") && !stdout.contains("not-cut"),
        "{stdout}"
    );

    // One KRL: the same version from both replicas, moved by the revocation.
    let (from_a, from_b) = (krl_version(a.addr), krl_version(b.addr));
    println!("KRL version: {krl_before} before, A {from_a}, B {from_b}");
    assert_eq!(from_a, from_b);
    assert_ne!(from_a, krl_before, "the revocation did not move the KRL");
    assert_eq!(http_get(a.addr, "/krl").1, http_get(b.addr, "/krl").1);
}
