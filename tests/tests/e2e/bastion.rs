//! `ssh -J` through `tpa-bastion` to a real sshd, with a certificate obtained
//! through the request API (issue 6): the command runs on an approved host, a
//! host the certificate does not name is refused at the bastion (and the
//! refusal is audited at the CA), the session record reaches the CA with the
//! byte counts the client reports, a session is cut at its certificate's
//! expiry and within 5 s of a revocation, and a record made while the CA is
//! down is delivered once after it comes back.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::flow::{PW, login, post};
use crate::harness::{
    CaDir, Guard, Sshd, UserKey, current_login, free_port, hash_password, http_get, require,
    terminate, tpa_bastion_bin, wait_for_port,
};

/// `ssh -F <config> <host> <command>`.
pub(crate) fn ssh(config: &Path, host: &str, command: &str) -> Output {
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
pub(crate) fn setup(tmp: &Path) -> Setup {
    setup_with(tmp, "")
}

/// Like [`setup`], with extra keys for the `web-debug` role (e.g. `cert_ttl`).
fn setup_with(tmp: &Path, role_extra: &str) -> Setup {
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
{role_extra}

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
    // web-1 is reached through a counting relay, web-2 directly.
    let relay = CountingRelay::start(format!("127.0.0.1:{}", sshd.port).parse().unwrap());

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
web-1 = "{relay}"
web-2 = "127.0.0.1:{port}"
"#,
            relay = relay.addr,
            port = sshd.port
        ),
    )
    .unwrap();
    std::fs::write(bastion_dir.join("ca.token"), BASTION_TOKEN).unwrap();
    let bastion_addr: SocketAddr = format!("127.0.0.1:{bastion_port}").parse().unwrap();
    let bastion = start_bastion(&bastion_dir, bastion_addr);
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
             BatchMode yes\n  PasswordAuthentication no\n  ConnectTimeout 10\n  LogLevel INFO\n",
            key = key.private.display(),
            cert = key.cert.display(),
            known = known_hosts.display(),
        ),
    )
    .unwrap();
    Setup {
        ca,
        ca_addr,
        running: Some(running),
        sshd,
        relay,
        bastion: Some(bastion),
        bastion_dir,
        ssh_config,
        request: id,
        bastion_addr,
    }
}

/// Starts `tpa-bastion serve` with `<dir>/bastion.toml` (logging to
/// `<dir>/bastion.log`, replacing an earlier log) and waits until it listens.
fn start_bastion(dir: &Path, addr: SocketAddr) -> Guard {
    let log = std::fs::File::create(dir.join("bastion.log")).unwrap();
    let child = Command::new(tpa_bastion_bin())
        .arg("serve")
        .arg("--config")
        .arg(dir.join("bastion.toml"))
        .env("TPA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tpa-bastion");
    let bastion = Guard { child };
    wait_for_port(addr, Duration::from_secs(20), "tpa-bastion");
    bastion
}

pub(crate) struct Setup {
    ca: CaDir,
    ca_addr: SocketAddr,
    /// The CA process (`None` while a test has stopped it).
    running: Option<crate::harness::RunningCa>,
    sshd: Sshd,
    relay: CountingRelay,
    /// The bastion process (`None` while a test restarts it).
    bastion: Option<Guard>,
    bastion_dir: std::path::PathBuf,
    pub(crate) ssh_config: std::path::PathBuf,
    request: String,
    pub(crate) bastion_addr: SocketAddr,
}

impl Setup {
    pub(crate) fn bastion_log(&self) -> String {
        std::fs::read_to_string(self.bastion_dir.join("bastion.log")).unwrap_or_default()
    }

    /// Restarts the bastion with `extra` appended to its configuration.
    pub(crate) fn restart_bastion_with(&mut self, extra: &str) {
        if let Some(old) = self.bastion.take() {
            terminate(old);
        }
        let config = self.bastion_dir.join("bastion.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(extra);
        std::fs::write(&config, text).unwrap();
        self.bastion = Some(start_bastion(&self.bastion_dir, self.bastion_addr));
    }

    /// The bastion's process id.
    pub(crate) fn bastion_pid(&self) -> u32 {
        self.bastion.as_ref().expect("bastion running").child.id()
    }

    /// The `session.record` audit events of the request, from `tpa-ca audit export`.
    fn session_records(&self) -> Vec<serde_json::Value> {
        self.audit_events("session.record", &format!("request:{}", self.request))
    }

    /// The audit events with `action` on `object` (read from the database,
    /// so this works while the CA is stopped).
    fn audit_events(&self, action: &str, object: &str) -> Vec<serde_json::Value> {
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
            .filter(|e| e["action"] == action && e["object"] == object)
            .collect()
    }

    /// Starts `ssh web-1 <command>` in the background, waits (bounded) until
    /// the bastion forwards it.
    fn start_session(&self, command: &str) -> Guard {
        let ssh_bin = require(
            "ssh",
            "install openssh-client (apt-get install openssh-client)",
        );
        let child = Command::new(ssh_bin)
            .arg("-F")
            .arg(&self.ssh_config)
            .args(["web-1", command])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssh");
        let mut session = Guard { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.bastion_log().contains("forward started") {
            assert!(
                session.child.try_wait().unwrap().is_none(),
                "ssh ended before the forward started; bastion log:\n{}",
                self.bastion_log()
            );
            assert!(
                Instant::now() < deadline,
                "no forward; bastion log:\n{}",
                self.bastion_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        session
    }
}

/// Waits (bounded by `within`) for a started ssh to exit; returns its exit
/// status, stdout and stderr.
fn wait_exit(session: &mut Guard, within: Duration, setup: &Setup) -> (bool, String, String) {
    use std::io::Read as _;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = session.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < within,
            "ssh still running after {within:?}; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    session
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    session
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), out, err)
}

/// A TCP relay in front of sshd that counts, per connection, the bytes it
/// carried each way: an independent check of the bastion's session records.
struct CountingRelay {
    addr: SocketAddr,
    /// (bytes towards sshd, bytes from sshd) of each finished connection, in
    /// the order they finished.
    counts: Arc<Mutex<Vec<(u64, u64)>>>,
    stop: Arc<AtomicBool>,
}

impl CountingRelay {
    fn start(target: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (counts_in, stop_in) = (counts.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop_in.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let counts = counts_in.clone();
                std::thread::spawn(move || {
                    let Ok(server) = std::net::TcpStream::connect(target) else {
                        return;
                    };
                    let copy = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                        std::thread::spawn(move || {
                            let n = std::io::copy(&mut from, &mut to).unwrap_or(0);
                            let _ = to.shutdown(std::net::Shutdown::Write);
                            n
                        })
                    };
                    let up = copy(client.try_clone().unwrap(), server.try_clone().unwrap());
                    let down = copy(server, client);
                    let counted = (up.join().unwrap_or(0), down.join().unwrap_or(0));
                    counts.lock().unwrap().push(counted);
                });
            }
        });
        Self { addr, counts, stop }
    }

    /// Waits (bounded) until `n` connections have finished; returns their counts.
    fn wait_for(&self, n: usize) -> Vec<(u64, u64)> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let counts = self.counts.lock().unwrap().clone();
            if counts.len() >= n {
                return counts;
            }
            assert!(Instant::now() < deadline, "relay saw {counts:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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
    assert_eq!(details["end"], "client_closed", "{details}");

    // Exactly the bytes that crossed the TCP connection to the host.
    let out = ssh(ssh_config, "web-1", "head -c 100000 /dev/zero");
    assert_eq!(out.stdout.len(), 100_000);
    let records = wait_for_records(&setup, 2);
    let relayed = setup.relay.wait_for(2);
    for (record, (to_host, from_host)) in records.iter().zip(relayed) {
        let details = &record["details"];
        assert_eq!(
            (
                details["bytes_to_target"].as_u64().unwrap(),
                details["bytes_from_target"].as_u64().unwrap()
            ),
            (to_host, from_host),
            "{details}"
        );
    }
    assert!(
        records[1]["details"]["bytes_from_target"].as_u64().unwrap() > 100_000,
        "{}",
        records[1]
    );

    // The refused forward to web-2 is in the request's audit history
    // (reports go out every 10 s).
    let object = format!("request:{}", setup.request);
    let deadline = Instant::now() + Duration::from_secs(30);
    let refusal = loop {
        if let Some(e) = setup
            .audit_events("bastion.channel_refused", &object)
            .into_iter()
            .next()
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "refusal not audited at the CA; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(refusal["outcome"], "denied");
    assert_eq!(refusal["details"]["what"], "direct-tcpip web-2:22");
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("host web-2 is not approved"),
        "{refusal}"
    );

    let Setup {
        bastion, running, ..
    } = setup;
    let status = terminate(bastion.unwrap());
    assert!(
        status.success(),
        "tpa-bastion exited with {status} on SIGTERM"
    );
    drop(running);
}

/// Waits (bounded) until the CA holds `n` session records of the request.
fn wait_for_records(setup: &Setup, n: usize) -> Vec<serde_json::Value> {
    wait_for_records_within(setup, n, Duration::from_secs(15))
}

/// Like [`wait_for_records`], waiting up to `within`.
fn wait_for_records_within(setup: &Setup, n: usize, within: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
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
    let mut session = setup.start_session("echo started; sleep 60; echo not-cut");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        session.child.try_wait().unwrap().is_none(),
        "ssh ended early"
    );

    let bob = login(setup.ca_addr, "bob");
    let (status, revoked) = post(
        setup.ca_addr,
        &bob,
        &format!("/api/v1/requests/{}/revoke", setup.request),
        r#"{"comment":"INC-6 closed"}"#,
    );
    assert_eq!(status, 200, "{revoked}");
    let revoked_at = Instant::now();
    let (ok, stdout, stderr) = wait_exit(&mut session, Duration::from_secs(10), &setup);
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
    assert!(!ok);
    assert!(
        stdout.contains("started") && !stdout.contains("not-cut"),
        "{stdout}"
    );
    // The user sees why, in one line.
    assert!(stderr.contains("access revoked"), "{stderr}");

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
    drop(session);
}

#[test]
fn a_session_on_a_short_certificate_is_cut_at_its_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let issued = Instant::now();
    let setup = setup_with(tmp.path(), "cert_ttl = \"15s\"");
    let mut session = setup.start_session("echo started; sleep 60; echo not-cut");
    let (ok, stdout, stderr) = wait_exit(&mut session, Duration::from_secs(40), &setup);
    // valid_before is 15 s after issuance (whole seconds); the cut comes then.
    let took = issued.elapsed();
    assert!(
        took >= Duration::from_secs(13) && took < Duration::from_secs(25),
        "cut {took:?} after the setup started"
    );
    assert!(!ok);
    assert!(
        stdout.contains("started") && !stdout.contains("not-cut"),
        "{stdout}"
    );
    assert!(stderr.contains("certificate expired"), "{stderr}");
    let records = wait_for_records(&setup, 1);
    assert_eq!(records[0]["details"]["end"], "certificate_expired");
    drop(session);
}

#[test]
fn a_record_made_while_the_ca_is_down_is_delivered_once_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut setup = setup(tmp.path());
    let mut session = setup.start_session("echo started; sleep 4; echo done");
    // The CA stops during the session.
    let status = setup.running.take().unwrap().terminate();
    assert!(status.success(), "tpa-ca exited with {status}");
    let (ok, stdout, _) = wait_exit(&mut session, Duration::from_secs(20), &setup);
    assert!(ok && stdout.contains("done"), "{stdout}");
    // The record waits in the spool; the CA has none.
    let spool = setup.bastion_dir.join("sessions.spool");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&spool)
        .unwrap_or_default()
        .lines()
        .count()
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "record not spooled; bastion log:\n{}",
            setup.bastion_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(setup.session_records().is_empty());
    assert!(
        setup.bastion_log().contains("not delivered"),
        "{}",
        setup.bastion_log()
    );

    // The CA comes back on the same address with the same database.
    let log = std::fs::File::create(setup.ca.dir.join("serve-again.log")).unwrap();
    let child = Command::new(crate::harness::tpa_ca_bin())
        .args([
            "serve",
            "--config",
            setup.ca.config.to_str().unwrap(),
            "--listen",
            &setup.ca_addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tpa-ca serve");
    let ca_again = Guard { child };
    wait_for_port(setup.ca_addr, Duration::from_secs(20), "tpa-ca serve");
    let records = wait_for_records_within(&setup, 1, Duration::from_secs(45));
    assert_eq!(records[0]["details"]["end"], "client_closed");
    // Delivered once: the spool empties and no duplicate follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&spool)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "spool not emptied");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(setup.session_records().len(), 1);
    drop(session);
    drop(ca_again);
}

#[test]
fn a_restarted_bastion_keeps_its_revocation_state_and_without_it_refuses_logins() {
    // Issue 6: fail closed on revocation state.
    let tmp = tempfile::tempdir().unwrap();
    let mut setup = setup(tmp.path());
    let out = ssh(&setup.ssh_config, "web-1", "echo first");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "first");
    let state_file = setup.bastion_dir.join("revocations.json");
    // The next poll (every 1 s here) saves the request's window.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let saved = std::fs::read_to_string(&state_file).unwrap_or_default();
        if saved.contains(&setup.request) {
            break;
        }
        assert!(Instant::now() < deadline, "state not saved: {saved}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The bastion restarts while the CA is down: the saved state lets it serve.
    // (Its CA keys come from a file then: with only ca_url it would not start
    // without the CA's /ca.pub.)
    let config = setup.bastion_dir.join("bastion.toml");
    let keys = setup.sshd.dir.join("trusted_user_ca.pub");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("trusted_user_ca_keys = \"{}\"\n{text}", keys.display()),
    )
    .unwrap();
    let status = setup.running.take().unwrap().terminate();
    assert!(status.success());
    assert!(terminate(setup.bastion.take().unwrap()).success());
    setup.bastion = Some(start_bastion(&setup.bastion_dir, setup.bastion_addr));
    let out = ssh(&setup.ssh_config, "web-1", "echo second");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "second",
        "{}\nbastion log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        setup.bastion_log()
    );

    // Without the saved state, and the CA still down, every login is refused.
    assert!(terminate(setup.bastion.take().unwrap()).success());
    std::fs::remove_file(&state_file).unwrap();
    setup.bastion = Some(start_bastion(&setup.bastion_dir, setup.bastion_addr));
    let out = ssh(&setup.ssh_config, "web-1", "echo third");
    assert!(
        !out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("third"),
        "a login passed without a known revocation state"
    );
    let log = setup.bastion_log();
    assert!(log.contains("no saved revocation state"), "{log}");
    assert!(log.contains("revocation state unknown"), "{log}");
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
