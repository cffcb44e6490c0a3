//! A bastion world for end-to-end tests: a CA with `[[bastions]]`, a real
//! sshd known as web-1 and web-2, a running `tpa-bastion`, and alice's
//! certificate through an auto-approved request.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    CaDir, Guard, PW, Sshd, UserKey, current_login, free_port, hash_password, http_get, login,
    post, require, terminate, tpa_bastion_bin, wait_for_port,
};

/// `ssh -F <config> <host> <command>`.
pub fn ssh(config: &Path, host: &str, command: &str) -> Output {
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
pub const BASTION_TOKEN: &str = "tpab_e2e-bastion-token-for-tests-only";
pub const BASTION_TOKEN_SHA256: &str =
    "3dd4e3729fa031a756e09b6e0b802b4212e493f59f2065c6e56ba5e944ccae2b";

/// A CA (with `[[bastions]]`), a real sshd known as web-1 and web-2, a running
/// `tpa-bastion` with a CA token, and alice's certificate for web-1 through an
/// auto-approved request that bob (sre-leads) may revoke.
pub fn setup(tmp: &Path) -> Setup {
    setup_with(tmp, "")
}

/// Like [`setup`], with extra keys for the `web-debug` role (e.g. `cert_ttl`).
pub fn setup_with(tmp: &Path, role_extra: &str) -> Setup {
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
pub fn start_bastion(dir: &Path, addr: SocketAddr) -> Guard {
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

pub struct Setup {
    pub ca: CaDir,
    pub ca_addr: SocketAddr,
    /// The CA process (`None` while a test has stopped it).
    pub running: Option<super::RunningCa>,
    pub sshd: Sshd,
    pub relay: CountingRelay,
    /// The bastion process (`None` while a test restarts it).
    pub bastion: Option<Guard>,
    pub bastion_dir: std::path::PathBuf,
    pub ssh_config: std::path::PathBuf,
    pub request: String,
    pub bastion_addr: SocketAddr,
}

impl Setup {
    pub fn bastion_log(&self) -> String {
        std::fs::read_to_string(self.bastion_dir.join("bastion.log")).unwrap_or_default()
    }

    /// Restarts the bastion with `extra` appended to its configuration.
    pub fn restart_bastion_with(&mut self, extra: &str) {
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
    pub fn bastion_pid(&self) -> u32 {
        self.bastion.as_ref().expect("bastion running").child.id()
    }

    /// The `session.record` audit events of the request, from `tpa-ca audit export`.
    pub fn session_records(&self) -> Vec<serde_json::Value> {
        self.audit_events("session.record", &format!("request:{}", self.request))
    }

    /// The audit events with `action` on `object` (read from the database,
    /// so this works while the CA is stopped).
    pub fn audit_events(&self, action: &str, object: &str) -> Vec<serde_json::Value> {
        let out = super::tpa_ca(&[
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
    pub fn start_session(&self, command: &str) -> Guard {
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

/// A TCP relay in front of sshd that counts, per connection, the bytes it
/// carried each way: an independent check of the bastion's session records.
pub struct CountingRelay {
    pub addr: SocketAddr,
    /// (bytes towards sshd, bytes from sshd) of each finished connection, in
    /// the order they finished.
    pub counts: Arc<Mutex<Vec<(u64, u64)>>>,
    pub stop: Arc<AtomicBool>,
}

impl CountingRelay {
    pub fn start(target: SocketAddr) -> Self {
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
    pub fn wait_for(&self, n: usize) -> Vec<(u64, u64)> {
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
