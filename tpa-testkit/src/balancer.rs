//! A round-robin TCP load balancer on 127.0.0.1 for tests of several CA
//! replicas (issue 15): each new connection goes to the next backend, so a
//! client that opens one connection per request (as the test HTTP client
//! does) alternates between replicas on every step of a flow. Plain threads
//! and blocking sockets, so that it serves async and blocking tests alike.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The balancer: its address, its backends and how many connections each
/// backend got. Stops accepting when dropped.
#[derive(Debug)]
pub struct Balancer {
    /// Where clients connect.
    pub address: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    backends: Mutex<Vec<SocketAddr>>,
    /// Connections handed to each backend, by index.
    counts: Mutex<Vec<u64>>,
    next: Mutex<usize>,
    stopped: AtomicBool,
}

impl Balancer {
    /// Binds a free port on 127.0.0.1 with no backends yet (so that its
    /// address can go into the replicas' `public_url` before they start);
    /// connections made before [`Balancer::set_backends`] are closed.
    pub fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the balancer");
        let address = listener.local_addr().expect("the balancer's address");
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(&listener, &accepting));
        Self {
            address,
            shared,
            accept: Some(accept),
        }
    }

    /// Sends new connections round-robin to `backends`.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        let n = backends.len();
        *self.shared.backends.lock().expect("backends lock") = backends;
        *self.shared.counts.lock().expect("counts lock") = vec![0; n];
    }

    /// How many connections each backend got, in [`Balancer::set_backends`] order.
    pub fn counts(&self) -> Vec<u64> {
        self.shared.counts.lock().expect("counts lock").clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect(self.address);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Some(backend) = pick(shared) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        std::thread::spawn(move || relay(client, backend));
    }
}

/// The next backend, counted.
fn pick(shared: &Shared) -> Option<SocketAddr> {
    let backends = shared.backends.lock().expect("backends lock");
    if backends.is_empty() {
        return None;
    }
    let mut next = shared.next.lock().expect("next lock");
    let index = *next % backends.len();
    *next = next.wrapping_add(1);
    if let Some(count) = shared.counts.lock().expect("counts lock").get_mut(index) {
        *count += 1;
    }
    backends.get(index).copied()
}

/// Copies both ways until either side closes. A backend that refuses the
/// connection (a stopped replica) closes the client's connection, as a
/// balancer without health checks would.
fn relay(client: TcpStream, backend: SocketAddr) {
    let Ok(server) = TcpStream::connect(backend) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(client_in), Ok(server_in)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || copy(client_in, server));
    copy(server_in, client);
    let _ = upstream.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
