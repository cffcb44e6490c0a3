//! Audit sinks: every audit event streamed in order to a signed webhook that
//! was down for a while, and to syslog receivers over TCP and UDP as RFC 5424
//! messages (issue 7, item 5); `/metrics` shows the backlog meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ca_server::notify::signature;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tpa_core::audit::Event;

use crate::helpers::{HOTFIX, spawn_team_app_with};
use crate::helpers::{TestApp, write_private};

const SECRET: &str = "audit-sink-secret-0123456789";

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Post {
    headers: Vec<(String, String)>,
    body: String,
}

impl Post {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

/// An HTTP receiver on 127.0.0.1: while `up` is false it drops every
/// connection unanswered (an outage); then it answers 200 and keeps the posts.
async fn receiver(
    up: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
) -> (String, Arc<Mutex<Vec<Post>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/audit", listener.local_addr().unwrap());
    let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
    let log = posts.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            if !up.load(Ordering::SeqCst) {
                refused.fetch_add(1, Ordering::SeqCst);
                drop(stream);
                continue;
            }
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let post = loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let headers: Vec<(String, String)> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| {
                        l.split_once(':')
                            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                while buf.len() < end + 4 + len {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8(buf[end + 4..].to_vec()).unwrap();
                break Some(Post { headers, body });
            };
            if let Some(post) = post {
                log.lock().unwrap().push(post);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            }
        }
    });
    (url, posts)
}

/// Activity: logins, a request (for host `web-<n>`), two approvals and a certificate.
async fn activity(app: &TestApp, host: u32) {
    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app
        .submit(&alice, &HOTFIX.replace("web-1", &format!("web-{host}")))
        .await;
    app.approve(&bob, &id).await;
    app.approve(&carol, &id).await;
    let key = serde_json::json!({ "public_key": crate::helpers::ed25519_public_key() });
    let r = app
        .post_as(
            &alice,
            &format!("/api/v1/requests/{id}/certificate"),
            &key.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn audit_head(app: &TestApp) -> i64 {
    app.data
        .open_plain()
        .one("SELECT max(seq) FROM audit_events", &[])
}

/// The `tpa_sink_backlog` of `sink` on `/metrics`.
async fn backlog(app: &TestApp, sink: &str) -> i64 {
    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let prefix = format!("tpa_sink_backlog{{kind=\"audit\",sink=\"{sink}\"}} ");
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no backlog for {sink}: {}", r.body))
        .parse()
        .unwrap()
}

/// Checks that `lines` are the events 1..=n of one valid chain.
fn check_chain(lines: &[String]) -> Vec<Event> {
    let events: Vec<Event> = lines
        .iter()
        .map(|l| Event::from_export_line(l).unwrap())
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i64::try_from(i).unwrap() + 1,
            "in order, no gap, no duplicate"
        );
        assert_eq!(e.compute_hash().unwrap(), e.hash, "seq {}", e.seq);
        if i > 0 {
            assert_eq!(e.prev_hash, events[i - 1].hash, "seq {}", e.seq);
        }
    }
    events
}

#[tokio::test]
async fn a_webhook_sink_that_was_down_gets_every_event_in_order_signed() {
    let up = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let (url, posts) = receiver(up.clone(), refused.clone()).await;
    let app = spawn_team_app_with(move |data| {
        write_private(&data.dir.join("siem.secret"), SECRET.as_bytes());
        data.edit_config(|text| {
            format!(
                "{text}\n[[audit_sinks]]\nname = \"siem\"\ntype = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"siem.secret\"\n"
            )
        });
    })
    .await;
    activity(&app, 1).await;
    // The receiver is down: attempts fail, nothing is delivered, the backlog grows.
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the sink did not retry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(posts.lock().unwrap().is_empty());
    assert!(backlog(&app, "siem").await >= audit_head(&app) - 1);
    // Back up: everything arrives, in order, once; then new events follow.
    up.store(true, Ordering::SeqCst);
    for round in 0..2 {
        if round == 1 {
            activity(&app, 2).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let head = audit_head(&app);
            let delivered: i64 = posts
                .lock()
                .unwrap()
                .last()
                .map_or(0, |p| p.header("x-tpa-last-seq").parse().unwrap());
            if delivered == head && backlog(&app, "siem").await == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "delivered {delivered} of {head}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let posts = posts.lock().unwrap().clone();
    let mut lines = vec![];
    for p in &posts {
        let timestamp: i64 = p.header("x-tpa-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 300);
        assert_eq!(
            p.header("x-tpa-signature"),
            signature(SECRET.as_bytes(), timestamp, p.body.as_bytes()).unwrap()
        );
        assert_ne!(
            p.header("x-tpa-signature"),
            signature(b"another-secret-0123456789", timestamp, p.body.as_bytes()).unwrap()
        );
        assert_eq!(p.header("content-type"), "application/x-ndjson");
        let batch: Vec<String> = p.body.lines().map(str::to_owned).collect();
        assert_eq!(
            batch
                .first()
                .map(|l| Event::from_export_line(l).unwrap().seq),
            Some(p.header("x-tpa-first-seq").parse().unwrap())
        );
        lines.extend(batch);
    }
    let events = check_chain(&lines);
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "ca.init",
        "auth.login",
        "request.submit",
        "request.approve",
        "cert.issue",
    ] {
        assert!(actions.contains(&a), "{a} missing: {actions:?}");
    }
    // The bodies, appended to a file, pass `tpa-ca audit verify --file`.
    let file = app.data.tmp.path().join("received.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = crate::helpers::run(
        crate::helpers::tpa_ca()
            .args(["audit", "verify", "--file"])
            .arg(&file),
    );
    assert_eq!(code, 0, "{out}{err}");
    app.stop().await;
}

/// Parses one RFC 5424 message of TPA's: returns (PRI, SD seq, export line).
fn parse_syslog(message: &str) -> (u16, i64, String) {
    let rest = message.strip_prefix('<').unwrap();
    let (pri, rest) = rest.split_once(">1 ").unwrap();
    let fields: Vec<&str> = rest.splitn(6, ' ').collect();
    let [time, host, app, pid, msgid, rest] = fields[..] else {
        panic!("bad header: {message}")
    };
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    assert!(!host.is_empty() && host.is_ascii());
    assert_eq!(app, "tpa-ca");
    assert_eq!(pid, std::process::id().to_string());
    let sd = rest.strip_prefix("[tpa@32473 ").unwrap();
    let seq: i64 = sd
        .strip_prefix("seq=\"")
        .and_then(|s| s.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let (_, msg) = rest.split_once("] \u{feff}").unwrap();
    let event = Event::from_export_line(msg).unwrap();
    assert_eq!((event.seq, event.action.as_str()), (seq, msgid));
    assert!(sd.contains(&format!("hash=\"{}\"", event.hash)));
    assert!(sd.contains(&format!("prev_hash=\"{}\"", event.prev_hash)));
    (pri.parse().unwrap(), seq, msg.to_owned())
}

#[tokio::test]
async fn syslog_sinks_send_rfc5424_over_tcp_and_udp() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let app = spawn_team_app_with(move |data| {
        data.edit_config(|text| {
            format!(
                "{text}\n[[audit_sinks]]\nname = \"tcp\"\ntype = \"syslog\"\naddress = \"{tcp_addr}\"\n\n[[audit_sinks]]\nname = \"udp\"\ntype = \"syslog\"\naddress = \"{udp_addr}\"\ntransport = \"udp\"\nfacility = \"local3\"\n"
            )
        });
    })
    .await;
    activity(&app, 1).await;
    let head = audit_head(&app);

    // TCP: octet-counted frames on one connection.
    let mut from_tcp = vec![];
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(20), tcp.accept())
        .await
        .unwrap()
        .unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while i64::try_from(from_tcp.len()).unwrap() < head {
        assert!(
            Instant::now() < deadline,
            "tcp got {} of {head}",
            from_tcp.len()
        );
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        // Take every complete frame: "<len> <message>".
        while let Some(space) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..space]).unwrap().parse().unwrap();
            if buf.len() < space + 1 + len {
                break;
            }
            let message = String::from_utf8(buf[space + 1..space + 1 + len].to_vec()).unwrap();
            buf.drain(..space + 1 + len);
            from_tcp.push(parse_syslog(&message));
        }
    }
    // authpriv (10): notice (5) for success, warning (4) for denied.
    assert!(
        from_tcp
            .iter()
            .all(|(pri, _, _)| *pri == 85 || *pri == 84 || *pri == 83)
    );
    let lines: Vec<String> = from_tcp.iter().map(|(_, _, l)| l.clone()).collect();
    check_chain(&lines);

    // UDP: one message per datagram.
    let mut from_udp = vec![];
    while i64::try_from(from_udp.len()).unwrap() < head {
        let mut datagram = vec![0u8; 65_536];
        let n = tokio::time::timeout(Duration::from_secs(20), udp.recv(&mut datagram))
            .await
            .expect("udp datagram")
            .unwrap();
        from_udp.push(parse_syslog(std::str::from_utf8(&datagram[..n]).unwrap()));
    }
    // local3 (19) * 8 + notice (5).
    assert!(
        from_udp.iter().any(|(pri, _, _)| *pri == 157),
        "{:?}",
        from_udp[0]
    );
    let lines: Vec<String> = from_udp.iter().map(|(_, _, l)| l.clone()).collect();
    check_chain(&lines);
    app.stop().await;
}
