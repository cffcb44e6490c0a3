//! The COMMIT-unknown fault on PostgreSQL (issue 15, "Faults"): the
//! connection breaks after the issuance transaction's COMMIT reached the
//! server but before its answer reached the CA. The CA cannot know whether
//! the certificate was recorded, so it does not return it (503 with
//! Retry-After); the row, committed, stays in the audit trail as issued but
//! not delivered, and the chain verifies.
//!
//! The break is made by a small TCP proxy between the CA and the real
//! PostgreSQL that follows the client's side of the wire protocol and, once
//! armed, forwards the COMMIT of the transaction that inserted a certificate
//! row, then closes both sides instead of forwarding the server's answer.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ca_server::config::DatabaseConfig;

use crate::helpers::{HOTFIX, ed25519_public_key, run, spawn_team_app_with, tpa_ca};

/// The proxy's switches, shared with the test.
#[derive(Debug, Default)]
struct Switches {
    /// Drop the next certificate transaction's COMMIT answer.
    armed: AtomicBool,
    /// A COMMIT was forwarded and its answer withheld.
    fired: AtomicBool,
    /// In place of the withheld answer, send a message the client does not
    /// expect (an answer it cannot read), then close.
    garble: AtomicBool,
    /// Stop accepting.
    stop: AtomicBool,
}

/// A TCP proxy on 127.0.0.1 (port 0) in front of a PostgreSQL server.
struct CommitDropper {
    address: SocketAddr,
    switches: Arc<Switches>,
}

impl CommitDropper {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let switches = Arc::new(Switches::default());
        let shared = switches.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                relay(client, server, shared.clone());
            }
        });
        Self { address, switches }
    }
}

impl Drop for CommitDropper {
    fn drop(&mut self) {
        self.switches.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.address);
    }
}

/// Relays one connection: client → server frame by frame (to see the
/// statements), server → client in chunks unless the answer is withheld.
fn relay(client: TcpStream, server: TcpStream, switches: Arc<Switches>) {
    let withhold = Arc::new(AtomicBool::new(false));
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    let withheld = withhold.clone();
    let (client_end, server_end) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let garble = switches.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if withheld.load(Ordering::SeqCst) {
                // The COMMIT's answer (the server committed): never
                // forwarded; a ParseComplete instead, when garbling.
                if garble.garble.load(Ordering::SeqCst) {
                    let _ = to_client.write_all(b"1\0\0\0\x04");
                    let _ = to_client.flush();
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                break;
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_end.shutdown(Shutdown::Both);
        let _ = server_end.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = client_to_server(client, server, &switches, &withhold);
    });
}

fn read_exact(stream: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

fn length(bytes: &[u8]) -> usize {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
}

/// The client's side of the protocol: untyped start-up messages (an
/// SSLRequest first, perhaps), then typed frames `tag, length, body`.
fn client_to_server(
    mut client: TcpStream,
    mut server: TcpStream,
    switches: &Switches,
    withhold: &AtomicBool,
) -> std::io::Result<()> {
    const SSL_REQUEST: u32 = 80_877_103;
    loop {
        let head = read_exact(&mut client, 8)?;
        let body = read_exact(&mut client, length(&head) - 8)?;
        server.write_all(&head)?;
        server.write_all(&body)?;
        if u32::from_be_bytes([head[4], head[5], head[6], head[7]]) != SSL_REQUEST {
            break;
        }
    }
    // Statements (by name) that insert a certificate row, and whether the
    // open transaction ran one.
    let mut inserting: HashSet<Vec<u8>> = HashSet::new();
    let mut inserted = false;
    loop {
        let head = read_exact(&mut client, 5)?;
        let body = read_exact(&mut client, length(&head[1..]) - 4)?;
        let text = String::from_utf8_lossy(&body).to_uppercase();
        match head[0] {
            // Parse: statement name, then its SQL.
            b'P' => {
                let name = body.split(|b| *b == 0).next().unwrap_or_default();
                if text.contains("INSERT INTO CERTIFICATES") {
                    inserting.insert(name.to_vec());
                    inserted = true;
                }
            }
            // Bind: portal name, then statement name.
            b'B' => {
                let statement = body.split(|b| *b == 0).nth(1).unwrap_or_default();
                if inserting.contains(statement) {
                    inserted = true;
                }
            }
            // A simple query: BEGIN, COMMIT, ROLLBACK, SAVEPOINT…
            b'Q' => {
                let query = text.trim_end_matches('\0').trim();
                // The CA commits with `SET LOCAL statement_timeout = 0; COMMIT`.
                let commit = query.ends_with("COMMIT");
                if commit || query == "ROLLBACK" {
                    if commit && inserted && switches.armed.swap(false, Ordering::SeqCst) {
                        withhold.store(true, Ordering::SeqCst);
                        switches.fired.store(true, Ordering::SeqCst);
                    }
                    inserted = false;
                }
            }
            _ => {}
        }
        server.write_all(&head)?;
        server.write_all(&body)?;
    }
}

// issue 15 (Faults): a connection dropped after COMMIT was sent but before
// its answer arrived: the caller gets 503 with Retry-After and no
// certificate bytes; the transaction did commit, so the certificate row and
// its `cert.issue` event are in the database, marked issued-not-delivered
// (`cert.undelivered`), `tpa-ca audit verify` passes, and a retry issues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_returns_no_certificate() {
    commit_answer_lost(false).await;
}

// issue 15 (review of the batched issuance): an answer to COMMIT that the
// client cannot read is as unknown as a lost one. The certificate is not
// returned, the batch is not issued a second time (a retry would hand out a
// certificate beside the committed one), and the committed one is marked
// issued-not-delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_cannot_be_read_is_not_retried() {
    commit_answer_lost(true).await;
}

async fn commit_answer_lost(garble: bool) {
    let mut proxy = None;
    let app = spawn_team_app_with(|data| {
        tokio::task::block_in_place(|| data.move_to_postgres());
        let DatabaseConfig::Postgres(pg) = &data.config.database else {
            unreachable!()
        };
        let config: postgres::Config = pg.url.parse().unwrap();
        let port = config.get_ports()[0];
        let dropper = CommitDropper::start(SocketAddr::from(([127, 0, 0, 1], port)));
        let (from, to) = (
            format!("127.0.0.1:{port}/"),
            format!("127.0.0.1:{}/", dropper.address.port()),
        );
        data.edit_config(|t| {
            assert!(t.contains(&from), "{t}");
            t.replace(&from, &to)
        });
        proxy = Some(dropper);
    })
    .await;
    let proxy = proxy.unwrap();

    let (alice, bob, carol) = (
        app.login("alice").await,
        app.login("bob").await,
        app.login("carol").await,
    );
    let id = app.submit(&alice, HOTFIX).await;
    assert_eq!(app.approve(&bob, &id).await.status, 200);
    let r = app.approve(&carol, &id).await;
    assert_eq!(r.json()["state"], "approved", "{}", r.body);

    proxy.switches.garble.store(garble, Ordering::SeqCst);
    proxy.switches.armed.store(true, Ordering::SeqCst);
    let key = ed25519_public_key();
    let r = app.certificate(&alice, &id, &key).await;

    assert!(
        proxy.switches.fired.load(Ordering::SeqCst),
        "the proxy saw no certificate COMMIT"
    );
    assert!(!r.body.contains("cert-v01@openssh.com"), "{}", r.body);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert_eq!(r.json()["code"], "unavailable", "{}", r.body);

    // The transaction committed: the row and its event are there, and the
    // issuance writer marks it (after answering, so within a bounded wait).
    let data = &app.data;
    let counts = || {
        tokio::task::block_in_place(|| {
            let mut client = data.postgres_client();
            client
                .query_one(
                    "SELECT (SELECT count(*) FROM certificates), \
                     (SELECT count(*) FROM audit_events WHERE action = 'cert.issue' AND outcome = 'success'), \
                     (SELECT count(*) FROM audit_events WHERE action = 'cert.undelivered' \
                      AND object = (SELECT 'cert:' || serial FROM certificates LIMIT 1))",
                    &[],
                )
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)))
                .unwrap()
        })
    };
    let mut seen = counts();
    for _ in 0..100 {
        if seen.2 > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        seen = counts();
    }
    assert_eq!(
        seen,
        (1, 1, 1),
        "(certificates, cert.issue events, cert.undelivered markers)"
    );

    // The replica recovers without a restart: asked again, it issues.
    let again = app.certificate(&alice, &id, &key).await;
    assert_eq!(again.status, 200, "{}", again.body);

    let (code, stdout, stderr) = tokio::task::block_in_place(|| {
        run(tpa_ca()
            .args(["audit", "verify", "--config"])
            .arg(&data.config_path))
    });
    assert_eq!(code, 0, "{stdout}{stderr}");
    drop(proxy);
    app.stop().await;
}
