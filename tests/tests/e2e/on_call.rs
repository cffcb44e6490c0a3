//! Issue 17 end to end: on-call alice gets hotfix-admin at once with
//! `tpa-ssh request --wait` (no approver acts), the PagerDuty fake is asked
//! by schedule and user, a Slack fake gets the alert for the access (an
//! `[[alerts]]` rule on the sensitive role), and the Jira fake gets the
//! approval comment from the outbox. The fakes answer with the vendors'
//! documented JSON.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::harness::{CaDir, PW, current_login, hash_password, tpa_ssh_bin};

/// One request a fake received: method, target (path and query) and body.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    body: String,
}

/// A provider API on 127.0.0.1 port 0; stopped (thread joined) on drop.
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(answer: fn(&Seen) -> (u16, String)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve(stream, &log, answer);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (at most 30 s) for a request that `pred` accepts.
    fn wait_for(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(s) = self.seen.lock().unwrap().iter().find(|s| pred(s)) {
                return s.clone();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("never saw {what}; saw {:#?}", self.seen.lock().unwrap());
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    log: &Mutex<Vec<Seen>>,
    answer: fn(&Seen) -> (u16, String),
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    while buf.len() < end + 4 + len {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let seen = Seen {
        method: first.next().unwrap_or_default().to_owned(),
        target: first.next().unwrap_or_default().to_owned(),
        body: String::from_utf8_lossy(&buf[end + 4..]).into_owned(),
    };
    let (status, body) = answer(&seen);
    log.lock().unwrap().push(seen);
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// PagerDuty REST API v2: alice (PALICE) is on call in PSCHED1.
fn pagerduty(s: &Seen) -> (u16, String) {
    let path = s.target.split('?').next().unwrap_or_default();
    let body = match path {
        "/users" => serde_json::json!({
            "users": [{ "id": "PALICE", "type": "user", "name": "Alice", "email": "alice@example.com" }],
            "limit": 25, "offset": 0, "more": false, "total": null
        }),
        "/oncalls" => serde_json::json!({
            "oncalls": [{
                "escalation_policy": { "id": "PEP1", "type": "escalation_policy_reference" },
                "escalation_level": 1,
                "schedule": { "id": "PSCHED1", "type": "schedule_reference" },
                "user": { "id": "PALICE", "type": "user_reference" },
                "start": "2026-12-07T00:00:00Z", "end": "2026-12-08T00:00:00Z"
            }],
            "limit": 25, "offset": 0, "more": false, "total": null
        }),
        _ => {
            return (
                404,
                r#"{"error":{"message":"Not Found","code":2100}}"#.to_owned(),
            );
        }
    };
    (200, body.to_string())
}

/// Jira REST API v2: INC-7 is open in project INC; comments are accepted.
fn jira(s: &Seen) -> (u16, String) {
    let path = s.target.split('?').next().unwrap_or_default();
    match (s.method.as_str(), path) {
        ("GET", "/rest/api/2/issue/INC-7") => (
            200,
            serde_json::json!({
                "id": "10007", "key": "INC-7",
                "fields": {
                    "status": { "name": "In Progress", "statusCategory": { "key": "indeterminate" } },
                    "project": { "key": "INC" },
                    "assignee": null, "reporter": null
                }
            })
            .to_string(),
        ),
        ("POST", "/rest/api/2/issue/INC-7/comment") => (201, r#"{"id":"10100"}"#.to_owned()),
        _ => (404, r#"{"errorMessages":["Issue does not exist"],"errors":{}}"#.to_owned()),
    }
}

/// A Slack incoming webhook: `200 ok` for every post.
fn slack(_: &Seen) -> (u16, String) {
    (200, "ok".to_owned())
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn on_call_alice_gets_hotfix_admin_at_once_slack_gets_the_alert_and_jira_the_comment() {
    // issue 17
    let tmp = tempfile::tempdir().unwrap();
    let pd = Fake::start(pagerduty);
    let jira_fake = Fake::start(jira);
    let slack_fake = Fake::start(slack);
    let ca = CaDir::init(tmp.path(), "ca");
    write_private(&ca.dir.join("pagerduty.token"), "pd-token-e2e-0001");
    write_private(&ca.dir.join("jira.token"), "jira-token-e2e-0001");
    let me = current_login();
    let hash = hash_password(PW);
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(&format!(
        r#"
[[on_call]]
name = "pd"
provider = "pagerduty"
url = "{pd}"
token_file = "pagerduty.token"

[[ticket_systems]]
name = "jira"
provider = "jira"
url = "{jira}"
token_file = "jira.token"

[[roles]]
name = "hotfix-admin"
logins = ["{me}"]
hosts = ["web-*"]
max_duration = "4h"
requestable_by = ["engineers"]
ticket_pattern = "INC-[0-9]+"
stages = [{{ group = "sre-leads" }}, {{ group = "managers" }}]
on_call = {{ provider = "pd", schedule = "PSCHED1", max_duration = "2h" }}
ticket_check = {{ system = "jira", projects = ["INC"], comment = true }}

[[accounts]]
username = "alice"
password_hash = "{hash}"
groups = ["engineers"]
email = "alice@example.com"

[[alert_destinations]]
name = "slack"
kind = "slack"
url = "{slack}/services/T000/B000/e2e"

[[alerts]]
name = "hotfix-access"
when = "sensitive_role"
roles = ["hotfix-admin"]
destinations = ["slack"]
"#,
        pd = pd.url(),
        jira = jira_fake.url(),
        slack = slack_fake.url(),
    ));
    std::fs::write(&ca.config, config).unwrap();
    let running = ca.serve();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let tpa_ssh = |args: &[&str]| {
        let mut c = Command::new(tpa_ssh_bin());
        c.args(args)
            .env("HOME", &home)
            .env("USER", &me)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .env("TPA_CA_URL", format!("http://{}", running.addr))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let mut login = tpa_ssh(&["login", "--username", "alice", "--password-stdin"])
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PW}\n").as_bytes())
        .unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let started = Instant::now();
    let out = tpa_ssh(&[
        "request",
        "--role",
        "hotfix-admin",
        "--host",
        "web-1",
        "--for",
        "1h",
        "--reason",
        "INC-7 disk full",
        "--ticket",
        "INC-7",
        "--wait",
    ])
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "approved at once, not after a wait: {:?}",
        started.elapsed()
    );
    assert!(
        text.contains("approved automatically, you are on call (pagerduty:pd:PSCHED1)"),
        "{text}"
    );
    assert!(text.contains("on-call check (pd)"), "{text}");
    // The certificate came with it (request --wait fetches it).
    let certs: Vec<_> = walk(&home)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-cert.pub"))
        .collect();
    assert!(!certs.is_empty(), "no certificate under {home:?}: {text}");

    let oncalls = pd.wait_for("GET /oncalls", |s| s.target.starts_with("/oncalls?"));
    assert!(
        oncalls.target.contains("schedule_ids%5B%5D=PSCHED1")
            && oncalls.target.contains("user_ids%5B%5D=PALICE"),
        "{}",
        oncalls.target
    );
    let comment = jira_fake.wait_for("the approval comment", |s| {
        s.method == "POST" && s.target == "/rest/api/2/issue/INC-7/comment"
    });
    for part in [
        "alice",
        "hotfix-admin",
        "web-1",
        "until",
        "on-call approval",
    ] {
        assert!(
            comment.body.contains(part),
            "{part:?} not in {}",
            comment.body
        );
    }
    // The alert for the access: one Slack post naming the role and the person.
    let alert = slack_fake.wait_for("the Slack alert", |s| {
        s.method == "POST" && s.target == "/services/T000/B000/e2e"
    });
    for part in ["hotfix-admin", "alice"] {
        assert!(alert.body.contains(part), "{part:?} not in {}", alert.body);
    }
    running.terminate();
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
