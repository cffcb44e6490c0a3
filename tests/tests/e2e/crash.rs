//! Promise 9: a crash (SIGKILL) in the middle of issuance leaves no
//! certificate without its row and audit event, and a chain that verifies;
//! the CA starts again on the same database and issues.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{CaDir, UserKey, hash_password, http_send, tpa_ca};

const PW: &str = "crash test password";

/// One HTTP call that reports a dead server as `None` instead of panicking.
fn try_send(addr: SocketAddr, path: &str, bearer: &str, body: &str) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response[split + 4..].to_vec()))
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// alice logs in and gets the auto-approved read-only-debug grant; returns
/// (token, request id).
fn grant(addr: SocketAddr) -> (String, String) {
    let login = json!({ "username": "alice", "password": PW }).to_string();
    let (status, body) = http_send(
        addr,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &login,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let token = json_of(&body)["token"].as_str().unwrap().to_owned();
    let request = json!({
        "role": "read-only-debug",
        "hosts": ["web-1"],
        "duration": "1h",
        "reason": "crash test",
    })
    .to_string();
    let (status, body) = try_send(addr, "/api/v1/requests", &token, &request).unwrap();
    // 201 for a new grant, 200 for the identical active one.
    assert!(
        status == 201 || status == 200,
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    let answer = json_of(&body);
    let id = answer["request"]["id"]
        .as_str()
        .or_else(|| answer["id"].as_str())
        .unwrap_or_else(|| panic!("no request id in {answer}"))
        .to_owned();
    (token, id)
}

#[test]
fn sigkill_during_issuance_leaves_no_certificate_without_its_row() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::init(tmp.path(), "ca");
    let mut config = std::fs::read_to_string(&ca.config).unwrap();
    config.push_str(ca_server::config::EXAMPLE_ROLES);
    config.push_str(&format!(
        "\n[[accounts]]\nusername = \"alice\"\npassword_hash = \"{}\"\ngroups = [\"engineers\"]\n",
        hash_password(PW)
    ));
    std::fs::write(&ca.config, config).unwrap();
    let key = UserKey::generate(tmp.path(), "alice");
    let body = json!({
        "public_key": std::fs::read_to_string(&key.public).unwrap().trim(),
    })
    .to_string();

    let running = ca.serve();
    let addr = running.addr;
    let (token, id) = grant(addr);
    let path = format!("/api/v1/requests/{id}/certificate");

    // Eight clients issue as fast as they can; every serial a client received
    // is remembered. The CA is killed while they run.
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (received, stop) = (received.clone(), stop.clone());
            let (token, path, body) = (token.clone(), path.clone(), body.clone());
            std::thread::spawn(move || {
                // Bounded: the CA dies within seconds, and the deadline caps it.
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match try_send(addr, &path, &token, &body) {
                        Some((200, answer)) => {
                            let serial = json_of(&answer)["serial"].as_str().map(str::to_owned);
                            received
                                .lock()
                                .unwrap()
                                .push(serial.expect("serial in answer"));
                        }
                        Some(_) => {}
                        None => return,
                    }
                }
            })
        })
        .collect();
    // Let issuance get going, then crash the CA mid-stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "no issuance before the kill");
        std::thread::sleep(Duration::from_millis(10));
    }
    running.kill_hard();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(received.len() >= 50, "{} certificates", received.len());

    // The chain verifies.
    let verify = tpa_ca(&["audit", "verify", "--config", ca.config.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "audit verify after SIGKILL: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // Every certificate a client received has its row, every row its
    // `cert.issue` event, and nothing else was left half-written.
    let conn =
        ca_server::store::open(&ca.dir.join("tpa.db"), ca_server::store::Create::Never).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    for serial in &received {
        let rows: i64 = conn
            .query_row(
                "SELECT count(*) FROM certificates WHERE serial = ?1",
                [serial],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            rows, 1,
            "certificate {serial} was handed out without its row"
        );
    }
    let certificates = count("SELECT count(*) FROM certificates");
    assert!(certificates >= received.len() as i64);
    assert_eq!(
        count(
            "SELECT count(*) FROM certificates c JOIN audit_events a ON a.seq = c.audit_seq
             WHERE a.action = 'cert.issue' AND a.outcome = 'success'"
        ),
        certificates,
        "a certificate row without its audit event"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM audit_events WHERE action = 'cert.issue' AND outcome = 'success'"
        ),
        certificates,
        "an issuance event without its certificate row"
    );
    drop(conn);

    // The CA starts again on the same database and issues.
    let again = ca.serve();
    let (token, id) = grant(again.addr);
    let (status, answer) = try_send(
        again.addr,
        &format!("/api/v1/requests/{id}/certificate"),
        &token,
        &body,
    )
    .expect("the restarted CA answers");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert!(again.terminate().success());
}
