//! Issue 15, a replica killed with SIGKILL during issuance by eight clients
//! of two `tpa-ca serve` replicas on one real PostgreSQL: the clients retry
//! on the other, every certificate they got has its row and its event, the
//! chain verifies. Also the clients' calls and that check, for the outage
//! test (`replicas_outage.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tpa_testkit::postgres_server::{PgDatabase, PgServer};

use crate::harness::{CaDir, HttpReply, PW, ca_with_roles, move_to_postgres, tpa_ca, try_http};
use crate::replicas::replica;

/// How long one client call may take before it counts as a hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub fn call(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<HttpReply> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    try_http(addr, method, path, &headers, body, CALL_TIMEOUT)
}

/// A token of `user` from `addr`.
pub fn token(addr: SocketAddr, user: &str) -> String {
    let login = serde_json::json!({ "username": user, "password": PW }).to_string();
    let r = call(addr, None, "POST", "/api/v1/login", &login).expect("log in");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

/// alice's token (from `addr`) and an auto-approved request of hers.
pub fn token_and_request(addr: SocketAddr, n: usize) -> (String, String) {
    let token = token(addr, "alice");
    let body = format!(
        r#"{{"role":"web-debug","hosts":["web-{n}"],"duration":"30m","reason":"INC-15 client {n}"}}"#
    );
    let r = call(addr, Some(&token), "POST", "/api/v1/requests", &body).expect("submit");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["request"]["id"].as_str().unwrap().to_owned();
    (token, id)
}

pub fn certificate_call(addr: SocketAddr, token: &str, id: &str) -> std::io::Result<HttpReply> {
    let body = serde_json::json!({ "public_key": tpa_testkit::ed25519_public_key() }).to_string();
    call(
        addr,
        Some(token),
        "POST",
        &format!("/api/v1/requests/{id}/certificate"),
        &body,
    )
}

/// Every serial a client received has its row whose audit event is its
/// `cert.issue`; no row is without that event, no such event without a row;
/// and `tpa-ca audit verify` passes on the shared store. Returns the number of rows.
pub fn check_rows_and_events(
    server: &PgServer,
    db: &PgDatabase,
    ca: &CaDir,
    received: &[String],
) -> i64 {
    let mut client = server
        .connect(&db.name)
        .expect("connect to the test database");
    for serial in received {
        let rows = client
            .query(
                "SELECT e.action, e.object FROM certificates c JOIN audit_events e ON e.seq = c.audit_seq \
                 WHERE c.serial = $1",
                &[serial],
            )
            .unwrap();
        assert_eq!(
            rows.len(),
            1,
            "certificate {serial} was returned without its row"
        );
        let (action, object): (String, String) = (rows[0].get(0), rows[0].get(1));
        assert_eq!(action, "cert.issue");
        assert_eq!(object, format!("cert:{serial}"));
    }
    let orphans: i64 = client
        .query_one(
            "SELECT count(*) FROM certificates c LEFT JOIN audit_events e \
             ON e.seq = c.audit_seq AND e.action = 'cert.issue' AND e.object = 'cert:' || c.serial \
             WHERE e.seq IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        orphans, 0,
        "certificate rows without their cert.issue event"
    );
    let rows: i64 = client
        .query_one("SELECT count(*) FROM certificates", &[])
        .unwrap()
        .get(0);
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = 'cert.issue' AND outcome = 'success'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        rows, events,
        "cert.issue events without their certificate row"
    );
    // The auditor's own command, on the PostgreSQL store the replicas share.
    let verified = tpa_ca(&["audit", "verify", "--config", ca.config.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && printed.contains("audit trail OK"),
        "tpa-ca audit verify: {printed}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    rows
}

// issue 15: kill -9 of replica A during issuance by eight clients; they
// retry on B, and every certificate they received has its row and event.
#[test]
fn a_replica_killed_during_issuance_loses_no_certificate_and_the_chain_verifies() {
    const CLIENTS: usize = 8;
    const CERTS_EACH: usize = 16;
    let tmp = tempfile::tempdir().unwrap();
    let ca = ca_with_roles(tmp.path(), "");
    let db = move_to_postgres(PgServer::shared(), &ca);
    let a = replica(&ca, "a");
    let b = replica(&ca, "b");
    let (a_addr, b_addr) = (a.addr, b.addr);

    // Logins one after the other (concurrent logins of one user from one
    // address count against its login limit until they succeed).
    let sessions: Vec<(String, String)> =
        (0..CLIENTS).map(|n| token_and_request(a_addr, n)).collect();
    // Certificates received so far, per client.
    let issued: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let clients: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(n, (token, id))| {
            let issued = issued.clone();
            std::thread::spawn(move || {
                // (serial, replica index) of each certificate received.
                let mut got: Vec<(String, usize)> = Vec::new();
                let mut on = 0;
                // How each failed call on A failed (refused: A was already gone).
                let mut failures_on_a: Vec<std::io::ErrorKind> = Vec::new();
                let mut attempts = 0;
                while got.len() < CERTS_EACH {
                    attempts += 1;
                    assert!(attempts < CERTS_EACH * 20, "client {n}: too many attempts");
                    let addr = [a_addr, b_addr][on];
                    match certificate_call(addr, &token, &id) {
                        Ok(r) if r.status == 200 => {
                            let serial = r.json()["serial"].as_str().unwrap().to_owned();
                            got.push((serial, on));
                            issued[n].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) if r.status == 503 && on == 1 => {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Ok(r) => assert!(
                            r.status == 503,
                            "client {n}: {} from replica {on}: {}",
                            r.status,
                            r.text()
                        ),
                        Err(e) => {
                            assert_eq!(on, 0, "client {n}: replica B failed: {e}");
                            failures_on_a.push(e.kind());
                            on = 1; // retry on the other replica
                        }
                    }
                }
                (got, failures_on_a)
            })
        })
        .collect();

    // Kill A once every client has received a certificate from it, while
    // they are all still issuing.
    let counts = || -> Vec<usize> { issued.iter().map(|c| c.load(Ordering::Relaxed)).collect() };
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts().contains(&0) {
        assert!(
            Instant::now() < deadline,
            "issuance never got going: {:?}",
            counts()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    a.kill_hard();
    let at_kill = counts();
    assert!(
        at_kill.iter().all(|&c| c < CERTS_EACH),
        "a client had finished before the kill: {at_kill:?}"
    );
    let killed_after: usize = at_kill.iter().sum();

    let mut received = Vec::new();
    let (mut from_a, mut from_b, mut failed_calls) = (0, 0, Vec::new());
    for (n, c) in clients.into_iter().enumerate() {
        let (got, failures) = c.join().unwrap_or_else(|_| panic!("client {n} panicked"));
        assert!(!failures.is_empty(), "client {n} never saw replica A fail");
        assert!(
            got.iter().any(|(_, on)| *on == 1),
            "client {n} never issued on B"
        );
        failed_calls.extend(failures);
        for (serial, on) in got {
            if on == 0 {
                from_a += 1
            } else {
                from_b += 1
            }
            received.push(serial);
        }
    }
    let rows = check_rows_and_events(PgServer::shared(), &db, &ca, &received);
    println!(
        "kill -9 of A after {killed_after} certificates: {} received ({from_a} from A, {from_b} from B), \
         calls failed on A and were retried on B: {failed_calls:?}, {rows} certificate rows \
         ({} issued but never delivered)",
        received.len(),
        rows - received.len() as i64
    );
    assert!(rows >= received.len() as i64);
    drop(b);
}
