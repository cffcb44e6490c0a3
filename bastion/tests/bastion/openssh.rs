//! The bastion as OpenSSH's own client sees it: plain keys in an agent ahead
//! of the certificate, refusals explained in words, the jump login (issues
//! 12 and 13). The client is the real `ssh` with `-W` (what `ssh -J` runs
//! for the hop), the agent the real `ssh-agent`, killed by PID.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bastion::ca_client::CaClient;
use bastion::{Event, feed};
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey};
use tokio::process::{Child, Command};

use crate::helpers::*;

fn require(program: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!("{program} not found: install openssh-client (apt-get install openssh-client)");
}

/// Writes `key` (mode 0600, as ssh-add wants) and, when given, its certificate
/// next to it as `<name>-cert.pub`.
fn write_key(dir: &Path, name: &str, key: &PrivateKey, cert: Option<&str>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some(cert) = cert {
        std::fs::write(dir.join(format!("{name}-cert.pub")), cert).unwrap();
    }
    path
}

/// A real ssh-agent on a socket in `dir`; killed by PID when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    async fn start(dir: &Path) -> Self {
        let socket = dir.join("agent.sock");
        let child = Command::new(require("ssh-agent"))
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ssh-agent");
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(socket.exists(), "ssh-agent did not create its socket");
        Self { child, socket }
    }

    /// `ssh-add` of each key file, in order (a certificate next to a key is added with it).
    async fn add(&self, keys: &[PathBuf]) {
        for key in keys {
            let out = Command::new(require("ssh-add"))
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.socket)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "ssh-add {}: {}",
                key.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `ssh -v -W <target>:22 <login>@bastion` with only the agent's keys;
/// returns (exit success, stderr).
async fn ssh_w(b: &TestBastion, agent: &Agent, login: &str, target: &str) -> (bool, String) {
    ssh_w_at(
        b.addr,
        agent.socket.clone(),
        login.to_owned(),
        target.to_owned(),
    )
    .await
}

/// [`ssh_w`] with owned arguments, for spawned tasks.
async fn ssh_w_at(
    addr: std::net::SocketAddr,
    agent: PathBuf,
    login: String,
    target: String,
) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(require("ssh"))
            // Not BatchMode: it turns keyboard-interactive off, and with it
            // the words of a refused certificate (docs/security-model.md).
            // Nothing prompts: stdin is null and every key is in the agent.
            .args(["-v", "-F", "/dev/null"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .arg("-o")
            .arg(format!("IdentityAgent={}", agent.display()))
            .args(["-o", "ConnectTimeout=20", "-p"])
            .arg(addr.port().to_string())
            .arg("-W")
            .arg(format!("{target}:22"))
            .arg(format!("{login}@127.0.0.1"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ssh ends within 60 s")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The revocation feed's poller of a test; aborted when dropped.
struct Poller(
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<FakeCaState>>,
);

impl Drop for Poller {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The bastion with `web-1` as an echo server, polling a fake CA whose feed
/// lists the certificate's key as live, an agent, and a certificate for
/// `deploy` on web-1 in `dir`.
async fn fixture(dir: &Path) -> (TestBastion, Agent, PathBuf, Poller) {
    let echo = echo_server().await;
    let b = spawn_bastion(&[("web-1", echo)]).await;
    let key = random_key();
    let cert = CertSpec::for_hosts("web-1").sign(&key, &b.ca);
    let cert_path = write_key(dir, "id_tpa", &key, Some(&cert.to_openssh().unwrap()));
    let (ca, ca_state) = fake_ca().await;
    let live = key.public_key().fingerprint(HashAlg::Sha256).to_string();
    ca_state.lock().unwrap().feed = serde_json::json!({
        "cursor": 1, "full": true, "revoked": [], "active": [], "certified_keys": [live],
    });
    let client = CaClient::new(&format!("http://{ca}"), "tpab_test-token").unwrap();
    let poller = Poller(
        tokio::spawn(feed::run(
            client,
            b.trust_updates.clone(),
            Duration::from_secs(60),
            b.poll_now.clone(),
            feed::FeedState::default(),
            dir.join("revocations.json"),
            std::future::pending(),
        )),
        ca_state,
    );
    // The first poll has published the live keys.
    for _ in 0..100 {
        if b.trust_updates.borrow().certified_keys.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        b.trust_updates.borrow().certified_keys.is_some(),
        "feed not polled"
    );
    let agent = Agent::start(dir).await;
    (b, agent, cert_path, poller)
}

#[tokio::test]
async fn four_plain_keys_ahead_of_the_certificate_still_log_in() {
    // Issue 13 (finding 5): plain keys got PK_OK at their probe, each then
    // cost a signed attempt, and the certificate came after "Too many
    // authentication attempts".
    let dir = tempfile::tempdir().unwrap();
    let (mut b, agent, cert_key, _poller) = fixture(dir.path()).await;
    let plain: Vec<PrivateKey> = (0..4).map(|_| random_key()).collect();
    let mut keys: Vec<PathBuf> = plain
        .iter()
        .enumerate()
        .map(|(i, key)| write_key(dir.path(), &format!("plain{i}"), key, None))
        .collect();
    keys.push(cert_key);
    agent.add(&keys).await;
    let (_ok, stderr) = ssh_w(&b, &agent, LOGIN, "web-1").await;
    assert!(!stderr.contains("Too many authentication"), "{stderr}");
    assert!(
        stderr.contains("Authenticated to 127.0.0.1"),
        "ssh did not log in:\n{stderr}"
    );
    // No plain key got "key accepted" at its probe, so ssh never signed
    // with one. (The certificate's own key, which the agent also holds
    // alone, has the certificate's fingerprint and may be accepted.)
    let accepted: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Server accepts key"))
        .collect();
    for key in &plain {
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        assert!(
            !accepted.iter().any(|l| l.contains(&fingerprint)),
            "plain key {fingerprint} was accepted at the probe:\n{stderr}"
        );
    }
    assert!(
        accepted.iter().any(|l| l.contains("-CERT")),
        "the certificate was not accepted:\n{stderr}"
    );
    b.expect_event(Duration::from_secs(5), |e| match e {
        Event::Authenticated { login, .. } => Some(login.clone()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn the_jump_login_works_with_any_valid_certificate() {
    // Issue 12: `ssh -J` logged in at the bastion as the local user name,
    // which is rarely a principal of the certificate.
    let dir = tempfile::tempdir().unwrap();
    let (mut b, agent, cert_key, _poller) = fixture(dir.path()).await;
    agent.add(&[cert_key]).await;
    let (_ok, stderr) = ssh_w(&b, &agent, "tpa", "web-1").await;
    assert!(stderr.contains("Authenticated to 127.0.0.1"), "{stderr}");
    let login = b
        .expect_event(Duration::from_secs(5), |e| match e {
            Event::Authenticated { login, .. } => Some(login.clone()),
            _ => None,
        })
        .await;
    // The record names the logins the certificate allows, not "tpa".
    assert_eq!(login, LOGIN);
}

#[tokio::test]
async fn a_refused_certificate_is_explained_to_the_client() {
    // Issue 12: the client saw only "Permission denied (publickey)".
    let dir = tempfile::tempdir().unwrap();
    let (_b, agent, cert_key, _poller) = fixture(dir.path()).await;
    agent.add(&[cert_key]).await;
    let (ok, stderr) = ssh_w(&_b, &agent, "ncalice", "web-1").await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("login \"ncalice\" is not a principal of the certificate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("connect to the bastion as \"tpa\""),
        "{stderr}"
    );
    // Nothing about the key or the CA beyond the serial.
    assert!(!stderr.contains("BEGIN OPENSSH"), "{stderr}");
}

#[tokio::test]
async fn a_refused_host_is_explained_to_the_client() {
    // Issue 12: a refused forward showed only "administratively prohibited".
    let dir = tempfile::tempdir().unwrap();
    let (_b, agent, cert_key, _poller) = fixture(dir.path()).await;
    agent.add(&[cert_key]).await;
    let (ok, stderr) = ssh_w(&_b, &agent, LOGIN, "web-2").await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("host web-2 is not approved by the certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("tpa-ssh request --host"), "{stderr}");
}

#[tokio::test]
async fn a_certificate_issued_after_the_last_poll_is_found_at_its_probe() {
    // Issue 13 (finding 5): the probe of a key the feed does not list yet
    // waits for a poll that started after the connection was accepted.
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let mut b = spawn_bastion(&[("web-1", echo)]).await;
    let (ca, ca_state) = fake_ca().await;
    ca_state.lock().unwrap().feed = serde_json::json!({
        "cursor": 1, "full": true, "revoked": [], "active": [], "certified_keys": [],
    });
    let client = CaClient::new(&format!("http://{ca}"), "tpab_test-token").unwrap();
    let _poller = Poller(
        tokio::spawn(feed::run(
            client,
            b.trust_updates.clone(),
            Duration::from_secs(600),
            b.poll_now.clone(),
            feed::FeedState::default(),
            dir.path().join("revocations.json"),
            std::future::pending(),
        )),
        ca_state.clone(),
    );
    for _ in 0..100 {
        if b.trust_updates.borrow().certified_keys.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Issued now; the bastion's next scheduled poll is ten minutes away.
    let key = random_key();
    let cert = CertSpec::for_hosts("web-1").sign(&key, &b.ca);
    let live = key.public_key().fingerprint(HashAlg::Sha256).to_string();
    ca_state.lock().unwrap().feed["certified_keys"] = serde_json::json!([live]);
    let cert_key = write_key(
        dir.path(),
        "id_tpa",
        &key,
        Some(&cert.to_openssh().unwrap()),
    );
    let agent = Agent::start(dir.path()).await;
    agent.add(&[cert_key]).await;
    let (_ok, stderr) = ssh_w(&b, &agent, LOGIN, "web-1").await;
    assert!(stderr.contains("Authenticated to 127.0.0.1"), "{stderr}");
    b.expect_event(Duration::from_secs(5), |e| match e {
        Event::Authenticated { .. } => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn a_flood_of_unknown_keys_costs_the_ca_one_poll_per_spacing() {
    // Issue 13 (finding 5): probes of unknown keys ask for polls; however
    // many connections ask, the CA sees at most one per ASKED_POLL_SPACING.
    let dir = tempfile::tempdir().unwrap();
    let (mut b, agent, _cert_key, poller) = fixture(dir.path()).await;
    // Only plain keys in the agent.
    let plain: Vec<PathBuf> = (0..2)
        .map(|i| write_key(dir.path(), &format!("plain{i}"), &random_key(), None))
        .collect();
    agent.add(&plain).await;
    let polls_before = poller.1.lock().unwrap().tokens.len();
    let started = std::time::Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..10 {
        clients.spawn(ssh_w_at(
            b.addr,
            agent.socket.clone(),
            LOGIN.to_owned(),
            "web-1".to_owned(),
        ));
    }
    while let Some(done) = clients.join_next().await {
        let (ok, stderr) = done.unwrap();
        assert!(!ok, "a plain key logged in:\n{stderr}");
        assert!(!stderr.contains("Server accepts key"), "{stderr}");
    }
    let elapsed = started.elapsed();
    let polls = poller.1.lock().unwrap().tokens.len() - polls_before;
    let bound = (elapsed.as_millis() / feed::ASKED_POLL_SPACING.as_millis()) as usize + 2;
    assert!(polls >= 1, "no poll was asked for");
    assert!(
        polls <= bound,
        "{polls} polls in {elapsed:?} (bound {bound})"
    );
    let _ = b.drain();
}
