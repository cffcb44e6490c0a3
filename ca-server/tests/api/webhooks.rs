//! Webhooks from the outbox: an outage delays delivery, loses nothing, keeps order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ca_server::config::EXAMPLE_ROLES;
use ca_server::notify::delivery::Lease;
use ca_server::notify::{Deliveries, OutboxBell, register_sinks, signature, spawn_senders};
use ca_server::workflow::requests;
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tpa_core::{Narrowing, RequestInput};

use crate::helpers::{APPROVERS, DataDir, user, write_private};

#[derive(Debug, Clone)]
struct Received {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// A webhook receiver on 127.0.0.1 that answers 503 to the first `failures` requests.
async fn receiver(
    failures: usize,
) -> (
    String,
    Arc<Mutex<Vec<Received>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers, then Content-Length bytes of body.
            let (head, body) = loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    break (head, String::from_utf8_lossy(&buf[end + 4..]).into_owned());
                }
            };
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| {
                    l.split_once(':')
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                })
                .collect();
            let status = {
                let mut entries = log.lock().unwrap();
                let status = if entries.len() < failures { 503 } else { 200 };
                entries.push(Received {
                    status,
                    headers,
                    body,
                });
                status
            };
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (url, seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_delays_but_loses_nothing_in_order_and_signed() {
    let (url, seen, server) = receiver(2).await;
    let (slack_url, slack_seen, slack_server) = receiver(0).await;
    let mut data = DataDir::new();
    let secret = "0123456789abcdef0123456789abcdef";
    write_private(&data.dir.join("hook.secret"), secret.as_bytes());
    data.edit_config(|text| {
        format!(
            "{text}{EXAMPLE_ROLES}\n[[webhooks]]\nname = \"audit-hook\"\nurl = \"{url}\"\nsecret_file = \"hook.secret\"\n\n\
             [[webhooks]]\nname = \"slack\"\nurl = \"{slack_url}\"\nformat = \"slack\"\n"
        )
    });
    data.add_accounts(APPROVERS);
    let config = data.config.clone();
    let identities = data.identities();
    register_sinks(&data.open_store(), &config.webhooks).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bell = OutboxBell::default();
    let deliveries = Deliveries {
        store: ca_server::notify::delivery::DeliveryStore::open(data.database()),
        bell: bell.clone(),
        shutdown: stopped,
        lease: Lease::for_process(),
    };
    let senders = spawn_senders(&deliveries, config.webhooks.clone()).unwrap();

    // created, approved (after two stages), then a second request created and denied.
    let now = Utc::now();
    let input = RequestInput {
        role: "hotfix-admin".into(),
        hosts: vec!["web-1".into()],
        duration: Some("1h".into()),
        reason: "INC-7 <b>disk</b> & more".into(),
        ticket: Some("INC-7".into()),
        ..RequestInput::default()
    };
    let (alice, bob, carol) = (
        user("alice", &["engineers"]),
        user("bob", &["sre-leads"]),
        user("carol", &["managers"]),
    );
    // The workflow's writes run off the runtime's thread (the PostgreSQL
    // client blocks).
    let first = data.blocking(|conn| {
        let first = requests::submit(
            conn,
            &config.policy,
            &config.workflow,
            &alice,
            &input,
            "t",
            now,
        )
        .unwrap()
        .request
        .id;
        requests::approve(
            conn,
            &config.policy,
            &identities,
            &bob,
            &first,
            Narrowing::default(),
            "t",
            now,
        )
        .unwrap();
        requests::approve(
            conn,
            &config.policy,
            &identities,
            &carol,
            &first,
            Narrowing::default(),
            "t",
            now,
        )
        .unwrap();
        let mut second_input = input.clone();
        second_input.hosts = vec!["web-2".into()];
        let second = requests::submit(
            conn,
            &config.policy,
            &config.workflow,
            &alice,
            &second_input,
            "t",
            now,
        )
        .unwrap()
        .request
        .id;
        requests::deny(conn, &config.policy, &bob, &second, "no", "t", now).unwrap();
        first
    });
    bell.ring();

    let delivered = |log: &Arc<Mutex<Vec<Received>>>| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|r| r.status == 200)
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while (delivered(&seen) < 4 || delivered(&slack_seen) < 4)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = seen.lock().unwrap().clone();
    assert_eq!(
        log.iter().filter(|r| r.status == 503).count(),
        2,
        "the outage happened"
    );
    let ok: Vec<&Received> = log.iter().filter(|r| r.status == 200).collect();
    let header = |r: &Received, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let kinds: Vec<String> = ok.iter().map(|r| header(r, "x-tpa-event")).collect();
    assert_eq!(
        kinds,
        [
            "request.created",
            "request.approved",
            "request.created",
            "request.denied"
        ]
    );
    let ids: Vec<i64> = ok
        .iter()
        .map(|r| header(r, "x-tpa-delivery").parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in order, each once: {ids:?}"
    );
    for r in &ok {
        assert_eq!(
            header(r, "x-tpa-signature"),
            signature(
                secret.as_bytes(),
                header(r, "x-tpa-timestamp").parse().unwrap(),
                r.body.as_bytes()
            )
            .unwrap()
        );
        let event: tpa_core::api::WebhookEvent = serde_json::from_str(&r.body).unwrap();
        assert_eq!(event.event, header(r, "x-tpa-event"));
    }
    let approved: tpa_core::api::WebhookEvent = serde_json::from_str(&ok[1].body).unwrap();
    assert_eq!(approved.request.id, first.to_string());
    assert_eq!(approved.request.state, "approved");
    assert_eq!(approved.request.approvals.len(), 2);

    let slack = slack_seen.lock().unwrap().clone();
    assert_eq!(slack.len(), 4);
    let text: tpa_core::api::SlackMessage = serde_json::from_str(&slack[0].body).unwrap();
    assert!(
        text.text.contains("hotfix-admin")
            && text.text.contains("&lt;b&gt;disk&lt;/b&gt; &amp; more"),
        "{}",
        text.text
    );
    assert!(
        slack[0].headers.iter().all(|(k, _)| k != "x-tpa-signature"),
        "unsigned sink sends no signature"
    );

    stop.send(true).unwrap();
    for s in senders {
        tokio::time::timeout(Duration::from_secs(5), s)
            .await
            .unwrap()
            .unwrap();
    }
    server.abort();
    slack_server.abort();
}

/// The bodies a Slack stand-in receives for one `read-only-debug` request
/// by alice with `reason` (auto-approved: `request.created`, then
/// `request.approved`).
async fn slack_bodies_for(reason: &str) -> Vec<String> {
    let (slack_url, slack_seen, slack_server) = receiver(0).await;
    let mut data = DataDir::new();
    data.edit_config(|text| {
        format!(
            "{text}{EXAMPLE_ROLES}\n[[webhooks]]\nname = \"slack\"\nurl = \"{slack_url}\"\nformat = \"slack\"\n"
        )
    });
    let config = data.config.clone();
    register_sinks(&data.open_store(), &config.webhooks).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bell = OutboxBell::default();
    let deliveries = Deliveries {
        store: ca_server::notify::delivery::DeliveryStore::open(data.database()),
        bell: bell.clone(),
        shutdown: stopped,
        lease: Lease::for_process(),
    };
    let senders = spawn_senders(&deliveries, config.webhooks.clone()).unwrap();
    let input = RequestInput {
        role: "read-only-debug".into(),
        hosts: vec!["web-1".into()],
        duration: Some("30m".into()),
        reason: reason.into(),
        ..RequestInput::default()
    };
    let alice = user("alice", &["engineers"]);
    data.blocking(|conn| {
        requests::submit(
            conn,
            &config.policy,
            &config.workflow,
            &alice,
            &input,
            "t",
            Utc::now(),
        )
    })
    .unwrap();
    bell.ring();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while slack_seen.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    for s in senders {
        tokio::time::timeout(Duration::from_secs(5), s)
            .await
            .unwrap()
            .unwrap();
    }
    slack_server.abort();
    let bodies: Vec<String> = slack_seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(bodies.len(), 2, "created and approved were delivered");
    bodies
}

// issue 11: 2,000 bytes of `&` used to become a 10 kB Slack message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_at_the_length_cap_cannot_make_a_large_slack_payload() {
    let longest = "&<".repeat(tpa_core::text::MAX_REASON / 2);
    for body in slack_bodies_for(&longest).await {
        assert!(body.len() <= 4096, "{} bytes", body.len());
        let message: tpa_core::api::SlackMessage = serde_json::from_str(&body).unwrap();
        assert!(message.text.ends_with("&amp;&lt;…"), "{}", message.text);
    }
    // A 4 kB reason is refused at submission, so it never reaches Slack.
    let mut data = DataDir::new();
    data.edit_config(|text| format!("{text}{EXAMPLE_ROLES}"));
    let input = RequestInput {
        role: "read-only-debug".into(),
        hosts: vec!["web-1".into()],
        reason: "&".repeat(4096),
        ..RequestInput::default()
    };
    let refused = data
        .blocking(|conn| {
            requests::submit(
                conn,
                &data.config.policy,
                &data.config.workflow,
                &user("alice", &["engineers"]),
                &input,
                "t",
                Utc::now(),
            )
        })
        .unwrap_err();
    assert!(
        matches!(
            refused,
            requests::WorkflowError::Refused {
                code: ca_server::refusal::Refusal::BadReason,
                ..
            }
        ),
        "{refused:?}"
    );
}

// issue 11: a newline and `*` in the reason forged a second, bold,
// authentic-looking line in the Slack message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_with_a_newline_and_asterisks_cannot_forge_a_slack_line() {
    let forged = "INC-1 logs\n*bob* was approved for *hotfix-admin* on db-1 _now_ ~x~ `y` > z";
    for body in slack_bodies_for(forged).await {
        let message: tpa_core::api::SlackMessage = serde_json::from_str(&body).unwrap();
        let text = message.text;
        assert!(!text.contains('\n'), "one line: {text:?}");
        assert!(!text.contains("*bob*"), "{text}");
        // Only TPA's own bold markers: around the requester and the role.
        assert_eq!(text.matches('*').count(), 4, "{text}");
        assert!(text.starts_with("*alice* "), "{text}");
        assert!(
            !text.contains('_') && !text.contains('~') && !text.contains('`'),
            "{text}"
        );
        assert!(text.contains("&gt; z"), "{text}");
        assert!(
            text.ends_with("reason: INC-1 logs \u{23CE} \u{2217}bob\u{2217} was approved for \u{2217}hotfix-admin\u{2217} on db-1 \u{02CD}now\u{02CD} \u{223C}x\u{223C} \u{02CB}y\u{02CB} &gt; z"),
            "{text}"
        );
    }
}
