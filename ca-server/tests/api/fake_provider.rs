//! A provider API (PagerDuty, Opsgenie, Jira, ServiceNow) on 127.0.0.1 port
//! 0, answering with the JSON of the vendors' references as each test
//! scripts it, and recording what it was asked. Raw HTTP/1.1 so that it can
//! also misbehave: stall, stream an endless body, paginate forever.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ca_server::config::EXAMPLE_ROLES;
use serde_json::{Value, json as json_value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{HOTFIX, PW};
use crate::helpers::{TestApp, http_send, spawn_app_with, write_private};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent (still percent-encoded).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query, percent-decoded (`+` as space).
    pub fn query(&self) -> String {
        let raw = self.target.split_once('?').map_or("", |(_, q)| q);
        decode(&raw.replace('+', " "))
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the fake answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status, extra headers and a JSON (or any) body.
    Body(u16, Vec<(String, String)>, String),
    /// Waits, then answers.
    After(Duration, Box<Answer>),
    /// 200 with a chunked body of `n` chunks of 64 KiB (no Content-Length).
    Endless(usize),
}

pub fn json(status: u16, value: serde_json::Value) -> Answer {
    Answer::Body(status, Vec::new(), value.to_string())
}

type Script = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A running fake; stops when dropped.
pub struct Fake {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    pub async fn start(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Script = Arc::new(script);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, log, script).await;
                });
            }
        });
        Self { url, seen, task }
    }

    /// What it was asked so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (bounded) until `pred` holds for some request.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        for _ in 0..300 {
            if let Some(s) = self.seen().into_iter().find(|s| pred(s)) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the fake never saw {what}; it saw {:#?}", self.seen());
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    log: Arc<Mutex<Vec<Seen>>>,
    script: Script,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < end + 4 + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
    let seen = Seen {
        method,
        target,
        headers,
        body,
    };
    let mut answer = script(&seen);
    log.lock().unwrap().push(seen);
    while let Answer::After(wait, next) = answer {
        tokio::time::sleep(wait).await;
        answer = *next;
    }
    match answer {
        Answer::Body(status, extra, body) => {
            let extra: String = extra.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).await?;
        }
        Answer::Endless(n) => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .await?;
            let piece = vec![b' '; 64 * 1024];
            for _ in 0..n {
                stream
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                stream.write_all(&piece).await?;
                stream.write_all(b"\r\n").await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
        }
        Answer::After(..) => {}
    }
    stream.shutdown().await
}

// The CA side of the provider tests: configuration and requests.

pub(crate) const TOKEN: &str = "provider-secret-token-1234";

/// The example roles with `role_keys` added to hotfix-admin.
pub(crate) fn hotfix_with(role_keys: &str) -> String {
    let last = "break_glass = { max_duration = \"30m\" }";
    assert!(EXAMPLE_ROLES.contains(last));
    EXAMPLE_ROLES.replace(last, &format!("{last}\n{role_keys}"))
}

/// A CA whose hotfix-admin has `role_keys`, with the `providers` tables,
/// alice (with `alice_email` on her account), bob and carol.
pub(crate) async fn app(providers: &str, role_keys: &str, alice_email: Option<&str>) -> TestApp {
    app_edited(providers, role_keys, alice_email, |t| t).await
}

/// Like [`app`], with the roles' text changed by `edit`.
pub(crate) async fn app_edited(
    providers: &str,
    role_keys: &str,
    alice_email: Option<&str>,
    edit: impl FnOnce(String) -> String,
) -> TestApp {
    let (providers, role_keys) = (providers.to_owned(), role_keys.to_owned());
    let alice_email = alice_email.map(str::to_owned);
    spawn_app_with(move |data| {
        write_private(&data.dir.join("provider.token"), TOKEN.as_bytes());
        let roles = edit(hotfix_with(&role_keys));
        data.edit_config(|t| format!("{t}{roles}\n{providers}\n"));
        data.add_account("alice", PW, &["engineers"]);
        if let Some(email) = alice_email {
            data.edit_config(|t| format!("{t}email = \"{email}\"\n"));
        }
        data.add_account("bob", PW, &["sre-leads"]);
        data.add_account("carol", PW, &["managers"]);
    })
    .await
}

pub(crate) fn provider(kind: &str, name: &str, url: &str) -> String {
    let table = match kind {
        "pagerduty" | "opsgenie" => "on_call",
        _ => "ticket_systems",
    };
    format!(
        "[[{table}]]\nname = \"{name}\"\nprovider = \"{kind}\"\nurl = \"{url}\"\ntoken_file = \"provider.token\"\n"
    )
}

pub(crate) const PD_RULE: &str =
    r#"on_call = { provider = "pd", schedule = "PSCHED1", max_duration = "2h" }"#;

pub(crate) fn page(key: &str, items: Value, more: bool) -> Answer {
    let mut body = json_value!({ "limit": 25, "offset": 0, "more": more, "total": null });
    body[key] = items;
    json(200, body)
}

/// PagerDuty as its REST API v2 reference documents `/users` and
/// `/oncalls`: alice is user PALICE; `on_call` says whether she is on call
/// in PSCHED1 now.
pub(crate) fn pagerduty(on_call: bool) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    move |s: &Seen| match s.path() {
        "/users" => page(
            "users",
            json_value!([
                { "id": "PALICE", "type": "user", "name": "Alice", "email": "Alice@Example.com" },
                { "id": "PEVIL", "type": "user", "name": "Eve", "email": "alice@example.com.evil.test" }
            ]),
            false,
        ),
        "/oncalls" if on_call => page(
            "oncalls",
            json_value!([{
                "escalation_policy": { "id": "PEP1", "type": "escalation_policy_reference" },
                "escalation_level": 1,
                "schedule": { "id": "PSCHED1", "type": "schedule_reference" },
                "user": { "id": "PALICE", "type": "user_reference", "summary": "Alice" },
                "start": "2026-12-07T00:00:00Z",
                "end": "2026-12-08T00:00:00Z"
            }]),
            false,
        ),
        "/oncalls" => page("oncalls", json_value!([]), false),
        _ => json(
            404,
            json_value!({ "error": { "message": "Not Found", "code": 2100 } }),
        ),
    }
}

/// The web page at `path` as `user` sees it (logged in with the form).
pub(crate) async fn page_as(app: &TestApp, user: &str, path: &str) -> String {
    let body = format!("username={user}&password={}", PW.replace(' ', "+"));
    let r = http_send(
        app.address,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "null"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http_send(app.address, "GET", path, &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

pub(crate) async fn submit(app: &TestApp, who: &str) -> (u16, Value, Duration) {
    let t = app.login(who).await;
    let started = Instant::now();
    let r = app.post_as(&t, "/api/v1/requests", HOTFIX).await;
    let took = started.elapsed();
    (r.status, r.json(), took)
}

/// Submits as alice and checks the request fell back to the stages with a
/// visible reason `outcome` (API view and request page).
pub(crate) async fn falls_back(app: &TestApp, outcome: &str) -> Value {
    let (status, body, _) = submit(app, "alice").await;
    assert_eq!(status, 201, "{body}");
    let r = &body["request"];
    assert_eq!(r["state"], "pending", "{body}");
    assert_eq!(r["approval_path"], "stages");
    assert!(r.get("on_call_approval").is_none(), "{body}");
    let check = &r["checks"][0];
    assert_eq!(check["kind"], "on_call", "{body}");
    assert_eq!(check["outcome"], outcome, "{body}");
    assert!(
        check["summary"]
            .as_str()
            .unwrap()
            .contains("waits for its approval stages"),
        "{body}"
    );
    // The same reason on GET and on the request page.
    let id = r["id"].as_str().unwrap();
    let alice = app.login("alice").await;
    let again = app
        .get_as(&alice, &format!("/api/v1/requests/{id}"))
        .await
        .json();
    assert_eq!(again["checks"], r["checks"]);
    body
}
