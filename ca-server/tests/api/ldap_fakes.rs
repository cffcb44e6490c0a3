//! Hostile directories for the LDAP tests (issue 16): one that accepts and
//! stays silent, and a man in the middle that refuses StartTLS and relays
//! everything else in plain text to the real slapd.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Accepts connections and answers nothing for `hold`, then closes them.
pub struct Silent {
    /// Its port on 127.0.0.1.
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Silent {
    pub async fn start(hold: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    let _ = tokio::time::timeout(hold, async {
                        while let Ok(n) = stream.read(&mut sink).await {
                            if n == 0 {
                                break;
                            }
                        }
                    })
                    .await;
                });
            }
        });
        Self {
            port,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays to slapd's plain port, except that a StartTLS request (an LDAP
/// extended request as the first message) is answered "unavailable" (52)
/// by the proxy itself, as an attacker stripping TLS would.
pub struct StripStartTls {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stripped: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// The message id of a short-form LDAP message (`30 LL 02 01 ID …`).
fn message_id(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [0x30, len, 0x02, 0x01, id, ..] if *len < 0x80 => Some(*id),
        [0x30, 0x81, _, 0x02, 0x01, id, ..] => Some(*id),
        _ => None,
    }
}

fn is_extended_request(bytes: &[u8]) -> bool {
    let op = match bytes {
        [0x30, len, 0x02, 0x01, _, op, ..] if *len < 0x80 => *op,
        [0x30, 0x81, _, 0x02, 0x01, _, op, ..] => *op,
        _ => return false,
    };
    op == 0x77
}

impl StripStartTls {
    pub async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stripped = Arc::new(AtomicUsize::new(0));
        let count = stripped.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut first = vec![0u8; 4096];
                    let Ok(n) = client.read(&mut first).await else {
                        return;
                    };
                    first.truncate(n);
                    if is_extended_request(&first) {
                        count.fetch_add(1, Ordering::SeqCst);
                        let id = message_id(&first).unwrap_or(1);
                        // ExtendedResponse { resultCode unavailable(52), "", "" }.
                        let reply = [
                            0x30, 0x0c, 0x02, 0x01, id, 0x78, 0x07, 0x0a, 0x01, 52, 0x04, 0x00,
                            0x04, 0x00,
                        ];
                        let _ = client.write_all(&reply).await;
                    }
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream_port)).await
                    else {
                        return;
                    };
                    if !is_extended_request(&first) && server.write_all(&first).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self {
            port,
            stripped,
            task,
        }
    }

    /// StartTLS requests refused so far.
    pub fn stripped(&self) -> usize {
        self.stripped.load(Ordering::SeqCst)
    }
}

impl Drop for StripStartTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}
