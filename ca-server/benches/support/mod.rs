//! What the HTTP benchmarks share: a small hand-written HTTP/1.1 keep-alive
//! client, latency percentiles, raw signing, the issuing client loop, the
//! benchmark accounts and the decision → waiting client rounds. A module of
//! `http_issuance`, `replicas` and `availability` (a directory, so Cargo
//! does not take it for a benchmark of its own).

#![allow(dead_code, reason = "each benchmark uses part of the support")]

pub(crate) mod postgres;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use ca_server::config::EXAMPLE_ROLES;
use ca_server::signer::Signer;
use chrono::Utc;
use serde_json::{Value, json};
use ssh_key::{Algorithm, PrivateKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tpa_core::{
    ApprovedScope, CertOrigin, CertSerial, CertTemplate, CriticalOptions, HumanDuration, Principal,
    SubjectKey, Username,
};

/// The longest any one HTTP exchange may take before the benchmark fails.
pub(crate) const EXCHANGE_LIMIT: Duration = Duration::from_secs(30);

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Client {
    stream: TcpStream,
    address: SocketAddr,
    buffer: Vec<u8>,
}

/// A response: status and body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }
}

impl Client {
    pub(crate) async fn connect(address: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            address,
            buffer: Vec::with_capacity(4096),
        })
    }

    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> anyhow::Result<Response> {
        tokio::time::timeout(EXCHANGE_LIMIT, self.exchange(method, path, token, body))
            .await
            .with_context(|| format!("no answer to {method} {path} within {EXCHANGE_LIMIT:?}"))?
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> anyhow::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.address);
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.stream.write_all(head.as_bytes()).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end])?.to_owned();
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .context("no status")?
                    .parse()
                    .context("bad status")?;
                let length: usize = head
                    .split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.trim().parse())
                    .transpose()?
                    .context("response without Content-Length")?;
                while self.buffer.len() < end + 4 + length {
                    self.fill().await?;
                }
                let body = self.buffer[end + 4..end + 4 + length].to_vec();
                self.buffer.drain(..end + 4 + length);
                return Ok(Response { status, body });
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// `POST /api/v1/login` → the API token.
    pub(crate) async fn login(&mut self, username: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({ "username": username, "password": password }).to_string();
        let r = self
            .send("POST", "/api/v1/login", None, Some(&body))
            .await?;
        ensure!(r.status == 200, "login of {username} answered {}", r.status);
        Ok(r.json()?["token"]
            .as_str()
            .context("no token in the login answer")?
            .to_owned())
    }

    /// `POST /api/v1/requests` → (request id, state).
    pub(crate) async fn submit(
        &mut self,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<(String, String)> {
        let r = self
            .send(
                "POST",
                "/api/v1/requests",
                Some(token),
                Some(&body.to_string()),
            )
            .await?;
        ensure!(
            r.status == 201,
            "submit answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json()?;
        let field = |name: &str| -> anyhow::Result<String> {
            Ok(v["request"][name]
                .as_str()
                .with_context(|| format!("no request.{name} in the submit answer"))?
                .to_owned())
        };
        Ok((field("id")?, field("state")?))
    }
}

/// Latencies, sorted, with percentiles.
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(crate) fn new(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Self(v)
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[index.min(self.0.len() - 1)]
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub(crate) fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Raw signing: `Signer::sign` of one fixed template on one thread, for `budget`.
pub(crate) fn raw_signing(signer: &Signer, budget: Duration) -> anyhow::Result<f64> {
    let user = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
    let now = Utc::now();
    let scope = ApprovedScope {
        subject: SubjectKey::parse(&user.public_key().to_openssh()?, &signer.ca_key_data())?,
        origin: CertOrigin::AdminIssue {
            admin: Username::parse("root")?,
        },
        principals: BTreeSet::from([Principal::parse("debug")?]),
        extensions: BTreeSet::new(),
        critical_options: CriticalOptions::default(),
        window_end: now + chrono::TimeDelta::minutes(15),
        cert_ttl: HumanDuration::parse("15m")?,
        hosts: BTreeSet::new(),
    };
    let template = CertTemplate::new(scope, CertSerial::new(42)?, now)?;
    for _ in 0..20 {
        std::hint::black_box(signer.sign(&template)?);
    }
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < budget && n < 10_000_000 {
        std::hint::black_box(signer.sign(&template)?);
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// One client: certificate requests back to back until `end`; latencies of
/// those that started after `measure_from`.
pub(crate) async fn issuing_client(
    address: SocketAddr,
    token: String,
    request_id: String,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let mut client = Client::connect(address).await?;
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
    let body = json!({ "public_key": key.public_key().to_openssh()? }).to_string();
    let path = format!("/api/v1/requests/{request_id}/certificate");
    let (mut answered, mut latencies) = (0, Vec::new());
    loop {
        let started = Instant::now();
        if started >= end {
            return Ok((answered, latencies));
        }
        let r = client
            .send("POST", &path, Some(&token), Some(&body))
            .await?;
        let took = started.elapsed();
        ensure!(
            r.status == 200,
            "certificate answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        answered += 1;
        if started >= measure_from && started + took <= end {
            latencies.push(took);
        }
    }
}

/// The API tokens of the three benchmark accounts.
pub(crate) struct Tokens {
    pub(crate) alice: String,
    pub(crate) bob: String,
    pub(crate) carol: String,
}

impl Tokens {
    /// Logs the three accounts in on `address`.
    pub(crate) async fn login(address: SocketAddr) -> anyhow::Result<Self> {
        let mut setup = Client::connect(address).await?;
        Ok(Self {
            alice: setup.login("alice", "alice-password").await?,
            bob: setup.login("bob", "bob-password").await?,
            carol: setup.login("carol", "carol-password").await?,
        })
    }
}

/// Appends the brief's roles and the three benchmark accounts (alice in
/// `engineers`, bob in `sre-leads`, carol in `managers`) to the
/// configuration `init` wrote.
pub(crate) fn add_roles_and_accounts(config_path: &Path) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(config_path)?;
    text.push_str(EXAMPLE_ROLES);
    for (name, group) in [
        ("alice", "engineers"),
        ("bob", "sre-leads"),
        ("carol", "managers"),
    ] {
        let hash = ca_server::auth::identity::hash_password(&format!("{name}-password"))?;
        text.push_str(&format!(
            "\n[[accounts]]\nusername = \"{name}\"\npassword_hash = \"{hash}\"\ngroups = [\"{group}\"]\n"
        ));
    }
    std::fs::write(config_path, text)?;
    Ok(())
}

pub(crate) async fn http_issuance(
    addresses: &[SocketAddr],
    tokens: &Tokens,
    clients: u64,
    budget: Duration,
) -> anyhow::Result<(f64, Latencies, usize)> {
    let address = *addresses.first().context("no server to drive")?;
    let mut setup = Client::connect(address).await?;
    let (id, state) = setup
        .submit(
            &tokens.alice,
            &json!({
                "role": "read-only-debug",
                "hosts": ["web-1"],
                "duration": "1h",
                "reason": "INC-1 http issuance benchmark",
            }),
        )
        .await?;
    ensure!(
        state == "approved",
        "the read-only-debug request is {state}, not auto-approved"
    );
    let warm_up = Duration::from_secs(1);
    let measure_from = Instant::now() + warm_up;
    let end = measure_from + budget;
    // Client i talks to replica i mod n: the load is spread evenly, and
    // the request and the token of one replica serve on every other.
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            tokio::spawn(issuing_client(
                addresses[i as usize % addresses.len()],
                tokens.alice.clone(),
                id.clone(),
                measure_from,
                end,
            ))
        })
        .collect();
    let (mut all, mut answered) = (Vec::new(), 0);
    for task in tasks {
        let (count, latencies) = task.await??;
        answered += count;
        all.extend(latencies);
    }
    let rate = all.len() as f64 / budget.as_secs_f64();
    Ok((rate, Latencies::new(all), answered))
}

/// Decision → waiting client: per round, a hotfix-admin request submitted
/// on `deciding`, a client waiting on it on `waiting` (another replica, or
/// the same server), then two approvals on `deciding`. Returns (from the
/// final approval's answer, from the start of the final approval's POST).
pub(crate) async fn decision_latency(
    deciding: SocketAddr,
    waiting: SocketAddr,
    tokens: &Tokens,
    rounds: u64,
) -> anyhow::Result<(Latencies, Latencies)> {
    let mut requester = Client::connect(deciding).await?;
    let mut approver = Client::connect(deciding).await?;
    let (mut after_answer, mut after_start) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (id, state) = requester
            .submit(
                &tokens.alice,
                &json!({
                    "role": "hotfix-admin",
                    // A fresh host each round: an identical request would return the active grant.
                    "hosts": [format!("web-{round}")],
                    "duration": "30m",
                    "reason": format!("INC-{round} decision latency benchmark"),
                    "ticket": format!("INC-{round}"),
                }),
            )
            .await?;
        ensure!(state == "pending", "hotfix-admin request is {state}");
        let waiter_token = tokens.alice.clone();
        let wait_path = format!("/api/v1/requests/{id}/wait?timeout=30");
        let mut waiter = Client::connect(waiting).await?;
        let waiting = tokio::spawn(async move {
            let r = waiter
                .send("GET", &wait_path, Some(&waiter_token), None)
                .await?;
            let at = Instant::now();
            ensure!(r.status == 200, "wait answered {}", r.status);
            let state = r.json()?["state"].as_str().unwrap_or_default().to_owned();
            ensure!(state == "approved", "wait answered with state {state}");
            anyhow::Ok(at)
        });
        // Let the waiter's GET reach the server and register.
        tokio::time::sleep(Duration::from_millis(50)).await;
        ensure!(
            !waiting.is_finished(),
            "the waiter answered before any decision"
        );
        let path = format!("/api/v1/requests/{id}/approve");
        let r = approver
            .send("POST", &path, Some(&tokens.bob), None)
            .await?;
        ensure!(r.status == 200, "first approval answered {}", r.status);
        let started = Instant::now();
        let r = approver
            .send("POST", &path, Some(&tokens.carol), None)
            .await?;
        let answered = Instant::now();
        ensure!(r.status == 200, "final approval answered {}", r.status);
        let woke = waiting.await??;
        after_answer.push(woke.saturating_duration_since(answered));
        after_start.push(woke.saturating_duration_since(started));
    }
    Ok((Latencies::new(after_answer), Latencies::new(after_start)))
}
