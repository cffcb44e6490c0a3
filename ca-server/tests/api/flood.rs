//! Slowloris against the real `tpa-ca serve` binary at a 1,024 soft
//! open-file limit (systemd's default), issue 13 finding 3: idle connections
//! from many addresses, more from one address than its cap, and a stalled
//! body. The CA must keep answering `/healthz`, login and certificate calls
//! within a second, refuse the excess at once, and close what stalls.

use std::io::BufRead as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::PW;
use crate::helpers::{DataDir, Response, ed25519_public_key, http_request, http_send, tpa_ca};

/// `tpa-ca serve`, killed by PID on drop.
struct Server {
    child: Child,
    address: SocketAddr,
    logs: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tpa-ca serve` on `data` under `sh -c 'ulimit -Sn 1024; exec …'`.
fn serve_at_1024_fds(data: &DataDir) -> Server {
    let bin = tpa_ca().get_program().to_owned();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 1024 && exec \"$0\" \"$@\"")
        .arg(bin)
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&data.config_path)
        .env("TPA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, logs) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let address = loop {
        let Ok(line) = logs.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("no listening log line; log so far: {seen:#?}");
        };
        let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if log["fields"]["message"] == "tpa-ca listening" {
            break log["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
        seen.push(line);
    };
    let server = Server {
        child,
        address,
        logs,
    };
    assert!(
        seen.iter()
            .any(|l| l.contains("RLIMIT_NOFILE") && l.contains("\"soft_before\":\"1024\"")),
        "the start-up log does not show the raised open-file limit: {seen:#?}"
    );
    server
}

/// Raises this test process's own soft open-file limit: it holds the flood.
fn raise_own_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(
        now >= 4096,
        "this test needs an open-file hard limit of at least 4096, not {now}"
    );
}

/// `n` idle connections from `from` (a 127.0.0.0/8 address).
async fn idle_connections(server: SocketAddr, from: IpAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from, 0)).unwrap();
        held.push(socket.connect(server).await.unwrap());
    }
    held
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn timed(call: impl Future<Output = Response>) -> (Response, Duration) {
    let start = Instant::now();
    let r = call.await;
    (r, start.elapsed())
}

async fn login(address: SocketAddr) -> Response {
    let body = serde_json::json!({ "username": "alice", "password": PW }).to_string();
    http_send(
        address,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await
}

// issue 13 (finding 3): before, 1,100 idle connections at a 1,024 fd limit
// made /healthz, login and certificates time out for 40 s, a stalled body
// stayed open for 90 s and more, and nothing was logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_floods_and_a_stalled_body_leave_the_ca_answering_within_a_second() {
    raise_own_fd_limit();
    let mut data = DataDir::new();
    data.edit_config(|text| {
        let limits = "[server]\nheader_read_timeout = \"8s\"\nbody_read_timeout = \"3s\"\n";
        format!(
            "{}{}",
            text.replace("[server]\n", limits),
            ca_server::config::EXAMPLE_ROLES
        )
    });
    data.add_account("alice", PW, &["engineers"]);
    let server = serve_at_1024_fds(&data);
    let address = server.address;
    let token = login(address).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let submit = http_send(
        address,
        "POST",
        "/api/v1/requests",
        &headers,
        r#"{"role":"read-only-debug","hosts":["web-1"],"duration":"30m","reason":"INC-2"}"#,
    )
    .await;
    assert_eq!(submit.status, 201, "{}", submit.body);
    let id = submit.json()["request"]["id"].as_str().unwrap().to_owned();

    // A body stalled after 10 bytes.
    let mut stalled = TcpStream::connect(address).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"username",
        )
        .await
        .unwrap();
    let stalled_at = Instant::now();

    // 1,100 idle connections from eleven addresses, plus 300 from one
    // address, over its cap of 256: together past the 1,024 soft limit.
    let mut flood = Vec::new();
    for host in 2..=12u8 {
        flood.extend(idle_connections(address, IpAddr::from([127, 0, 0, host]), 100).await);
    }
    let mut one_address = idle_connections(address, IpAddr::from([127, 0, 0, 20]), 300).await;
    assert_eq!(flood.len(), 1_100);

    let (health, took) = timed(http_request(address, "GET", "/healthz")).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        took < Duration::from_secs(1),
        "/healthz took {took:?} under the flood"
    );
    let (r, took) = timed(login(address)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        took < Duration::from_secs(1),
        "login took {took:?} under the flood"
    );
    let key = serde_json::json!({ "public_key": ed25519_public_key() }).to_string();
    let path = format!("/api/v1/requests/{id}/certificate");
    let (r, took) = timed(http_send(address, "POST", &path, &headers, &key)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        took < Duration::from_secs(1),
        "a certificate took {took:?} under the flood"
    );

    // The connections over the per-address cap were closed at once and counted.
    let mut closed = 0;
    for stream in &mut one_address {
        if closed_within(stream, Duration::from_millis(5)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 44,
        "only {closed} of 300 connections from one address were closed"
    );
    let metrics = http_request(address, "GET", "/metrics").await;
    assert!(
        metrics.body.lines().any(|l| l
            .strip_prefix("tpa_http_connections_refused_total{cap=\"per_address\"} ")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 44)),
        "{}",
        metrics.body
    );

    // The stalled body is answered 408 once `body_read_timeout` (3 s) passed.
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the stalled body was still open after {:?}",
        stalled_at.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    assert!(stalled_at.elapsed() >= Duration::from_secs(3));

    // Idle connections are closed by the header read timeout (8 s).
    assert!(
        closed_within(&mut flood[0], Duration::from_secs(15)).await,
        "an idle connection outlived the header read timeout"
    );
    let warned: Vec<String> = server.logs.try_iter().collect();
    assert!(
        warned
            .iter()
            .any(|l| l.contains("connection refused: a connection cap is reached")),
        "the refused flood was not logged: {warned:#?}"
    );
}
