//! A bastion on 127.0.0.1:0 with a test CA, an event recorder, a russh client,
//! a TCP echo server. Everything runs on the test's runtime and stops with it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use bastion::Trust;
use bastion::config::{HostAddress, Inventory, Limits, TrustSource};
use bastion::{Bastion, BastionConfig, Event, EventSink};
use russh::client;
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::{Algorithm, Certificate, PrivateKey, PublicKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tpa_core::{HostName, TrustedCas};

pub const REQUEST: &str = "req_aaaaaaaaaaaaaaaaaaaaaaaaaa";
pub const LOGIN: &str = "deploy";

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn random_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
}

/// Records every event for the test to inspect.
#[derive(Debug)]
struct Recorder(mpsc::UnboundedSender<Event>);

impl EventSink for Recorder {
    fn record(&self, event: &Event) {
        let _ = self.0.send(event.clone());
    }
}

/// The certificate every test starts from; `edit` changes one thing.
pub struct CertSpec {
    pub serial: u64,
    pub cert_type: CertType,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    pub extensions: Vec<(String, String)>,
    pub critical_options: Vec<(String, String)>,
}

impl CertSpec {
    /// A user certificate for `deploy`, valid for 10 minutes, approved for `hosts`.
    pub fn for_hosts(hosts: &str) -> Self {
        let now = unix_now();
        Self {
            serial: 4242,
            cert_type: CertType::User,
            principals: vec![LOGIN.to_owned()],
            valid_after: now - 60,
            valid_before: now + 600,
            extensions: vec![(
                "tpa-request@tpa".to_owned(),
                format!("request={REQUEST};hosts={hosts}"),
            )],
            critical_options: Vec::new(),
        }
    }

    pub fn sign(&self, subject: &PrivateKey, ca: &PrivateKey) -> Certificate {
        let mut b = Builder::new_with_random_nonce(
            &mut rand::rng(),
            subject.public_key().key_data().clone(),
            self.valid_after,
            self.valid_before,
        )
        .unwrap();
        b.serial(self.serial).unwrap();
        b.cert_type(self.cert_type).unwrap();
        b.key_id(format!("tpa:request={REQUEST}:user=alice"))
            .unwrap();
        for p in &self.principals {
            b.valid_principal(p.as_str()).unwrap();
        }
        for (k, v) in &self.extensions {
            b.extension(k.as_str(), v.as_str()).unwrap();
        }
        for (k, v) in &self.critical_options {
            b.critical_option(k.as_str(), v.as_str()).unwrap();
        }
        b.sign(ca).unwrap()
    }
}

/// A running bastion with its test CA.
pub struct TestBastion {
    pub addr: SocketAddr,
    pub ca: PrivateKey,
    pub host_key: PublicKey,
    pub trust_updates: tokio::sync::watch::Sender<Arc<Trust>>,
    /// What a login notifies to have the feed polled at once.
    pub poll_now: Arc<bastion::feed::PollRequests>,
    events: mpsc::UnboundedReceiver<Event>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts a bastion with `inventory` (name → address) and default limits.
pub async fn spawn_bastion(inventory: &[(&str, SocketAddr)]) -> TestBastion {
    spawn_bastion_with(inventory, Limits::default()).await
}

pub async fn spawn_bastion_with(inventory: &[(&str, SocketAddr)], limits: Limits) -> TestBastion {
    spawn_bastion_full(inventory, limits, None).await
}

/// Both the test's recorder and `extra` get every event.
#[derive(Debug)]
struct Tee(Recorder, Arc<dyn EventSink>);

impl EventSink for Tee {
    fn record(&self, event: &Event) {
        self.0.record(event);
        self.1.record(event);
    }
}

/// Like [`spawn_bastion_with`], with another sink (the session recorder) beside the test's.
pub async fn spawn_bastion_full(
    inventory: &[(&str, SocketAddr)],
    limits: Limits,
    extra: Option<Arc<dyn EventSink>>,
) -> TestBastion {
    let ca = random_key();
    let host_key = random_key();
    let hosts: BTreeMap<HostName, HostAddress> = inventory
        .iter()
        .map(|(name, addr)| {
            (
                HostName::parse(name).unwrap(),
                HostAddress::parse(&addr.to_string()).unwrap(),
            )
        })
        .collect();
    let config = BastionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        host_key_file: "unused".into(),
        trust: TrustSource::File("unused".into()),
        limits,
        inventory: Inventory::new(hosts),
        ca_url: None,
        ca_token_file: None,
        session_spool: "unused".into(),
        refusal_spool: "unused".into(),
        revocation_poll: bastion::config::DEFAULT_REVOCATION_POLL,
        revocation_state_file: "unused".into(),
        trust_refresh: bastion::config::DEFAULT_TRUST_REFRESH,
    };
    let trust = Trust {
        cas: TrustedCas::new(vec![ca.public_key().key_data().clone()]),
        ..Default::default()
    };
    let (tx, events) = mpsc::unbounded_channel();
    let public = host_key.public_key().clone();
    let sink: Arc<dyn EventSink> = match extra {
        Some(extra) => Arc::new(Tee(Recorder(tx), extra)),
        None => Arc::new(Recorder(tx)),
    };
    let bastion = Bastion::bind(&config, host_key, trust, sink).await.unwrap();
    let addr = bastion.local_addr().unwrap();
    let trust_updates = bastion.trust_updates();
    let poll_now = bastion.poll_requests();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(bastion.run_until(async {
        let _ = stopped.await;
    }));
    TestBastion {
        addr,
        ca,
        host_key: public,
        trust_updates,
        poll_now,
        events,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestBastion {
    /// Waits up to `within` for an event that `pick` accepts; panics with the
    /// events seen otherwise.
    pub async fn expect_event<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                    seen.push(event);
                }
                _ => panic!("expected event not seen within {within:?}; saw {seen:#?}"),
            }
        }
    }

    /// The reason of the next authentication rejection.
    pub async fn rejection_reason(&mut self) -> String {
        self.expect_event(Duration::from_secs(5), |e| match e {
            Event::AuthRejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    /// The reason of the next refused channel.
    pub async fn refusal_reason(&mut self) -> String {
        self.expect_event(Duration::from_secs(5), |e| match e {
            Event::ChannelRefused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    /// Events recorded so far, without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Connects a russh client that pins the bastion's host key.
    pub async fn connect(&self) -> client::Handle<Client> {
        let config = Arc::new(client::Config::default());
        client::connect(
            config,
            self.addr,
            Client {
                host_key: self.host_key.clone(),
            },
        )
        .await
        .unwrap()
    }

    /// Connects and authenticates with a fresh key and a certificate from `spec`
    /// signed by the test CA; returns the session and whether it succeeded.
    pub async fn login(&self, login: &str, spec: &CertSpec) -> (client::Handle<Client>, bool) {
        let key = random_key();
        let cert = spec.sign(&key, &self.ca);
        let mut session = self.connect().await;
        let ok = session
            .authenticate_openssh_cert(login, Arc::new(key), cert)
            .await
            .unwrap()
            .success();
        (session, ok)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("bastion stops within 15 s")
                .unwrap();
        }
    }
}

impl Drop for TestBastion {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A russh client that accepts exactly the bastion's host key.
pub struct Client {
    host_key: PublicKey,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.host_key.key_data()),
        )
    }
}

/// A TCP echo server on 127.0.0.1:0; it stops with the test's runtime.
pub async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if socket.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// An address where nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// What the fake CA serves and has received.
#[derive(Debug, Default)]
pub struct FakeCaState {
    /// The answer to every feed poll.
    pub feed: serde_json::Value,
    /// Session records received, in order (duplicates included).
    pub records: Vec<tpa_core::api::SessionRecord>,
    /// Refusal reports received, in order (duplicates included).
    pub events: Vec<tpa_core::api::BastionEvent>,
    /// While true, every call gets 503.
    pub down: bool,
    /// Bearer tokens seen.
    pub tokens: Vec<String>,
}

/// A minimal CA on 127.0.0.1:0 for the bastion endpoints; it stops with the test's runtime.
pub async fn fake_ca() -> (SocketAddr, Arc<std::sync::Mutex<FakeCaState>>) {
    let state = Arc::new(std::sync::Mutex::new(FakeCaState {
        feed: serde_json::json!({"cursor": 1, "full": true, "revoked": [], "active": []}),
        ..Default::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let state = shared.clone();
            tokio::spawn(async move {
                let _ = serve_fake_ca(socket, state).await;
            });
        }
    });
    (addr, state)
}

async fn serve_fake_ca(
    mut socket: tokio::net::TcpStream,
    state: Arc<std::sync::Mutex<FakeCaState>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
        let Some(head_end) = head_end else {
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + 4 + length {
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[head_end + 4..head_end + 4 + length].to_vec();
        buf.drain(..head_end + 4 + length);
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let token = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("authorization: Bearer ")
                    .or_else(|| l.strip_prefix("Authorization: Bearer "))
            })
            .unwrap_or_default()
            .to_owned();
        let (status, answer) = {
            let mut s = state.lock().unwrap();
            s.tokens.push(token);
            if s.down {
                (
                    "503 Service Unavailable",
                    r#"{"code":"unavailable","message":"down"}"#.to_owned(),
                )
            } else if request_line.starts_with("GET /api/v1/bastion/revocations") {
                ("200 OK", s.feed.to_string())
            } else if request_line.starts_with("POST /api/v1/sessions") {
                let batch: tpa_core::api::SessionBatch = serde_json::from_slice(&body).unwrap();
                let n = batch.records.len();
                s.records.extend(batch.records);
                ("200 OK", format!(r#"{{"stored":{n},"duplicates":0}}"#))
            } else if request_line.starts_with("POST /api/v1/bastion/events") {
                let batch: tpa_core::api::BastionEventBatch =
                    serde_json::from_slice(&body).unwrap();
                let n = batch.events.len();
                s.events.extend(batch.events);
                ("200 OK", format!(r#"{{"stored":{n},"duplicates":0}}"#))
            } else {
                (
                    "404 Not Found",
                    r#"{"code":"not_found","message":"no"}"#.to_owned(),
                )
            }
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        socket.write_all(response.as_bytes()).await?;
    }
}
