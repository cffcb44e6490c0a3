//! Several `tpa-ca serve` replicas on one real PostgreSQL (issue 15): moving a
//! CA directory's fresh store into PostgreSQL, a routing load balancer in
//! front of the replicas, and an HTTP client that reports a refused or cut
//! connection as an error instead of panicking (a client that retries on
//! the other replica needs to see it).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ca_server::config::Config;
use tpa_testkit::postgres_server::{PgDatabase, PgServer};

use super::CaDir;

/// Moves the fresh SQLite store of `ca` (as `tpa-ca init` made it) into a new
/// database on `server` with `migrate-store`, deletes the SQLite file and
/// points `[database]` at PostgreSQL, so every replica started with this
/// configuration shares that database.
pub fn move_to_postgres(server: &PgServer, ca: &CaDir) -> PgDatabase {
    let sqlite = Config::load(&ca.config)
        .expect("load the CA configuration")
        .database_path;
    let (db, section) = tpa_testkit::move_to_postgres_on(server, &sqlite);
    let text = std::fs::read_to_string(&ca.config).unwrap();
    assert!(text.contains(ca_server::config::SQLITE_DATABASE), "{text}");
    std::fs::write(
        &ca.config,
        text.replace(ca_server::config::SQLITE_DATABASE, &section),
    )
    .unwrap();
    db
}

/// One connection the balancer routed: when, its request line, the backend.
#[derive(Debug, Clone)]
pub struct Routed {
    pub at: Instant,
    pub request_line: String,
    pub backend: usize,
}

/// An HTTP load balancer on 127.0.0.1 that picks a backend per connection
/// from the request line and adds `Connection: close`, so that every HTTP
/// request is routed on its own (a client cannot keep talking to the backend
/// of its previous request).
pub struct Balancer {
    pub addr: SocketAddr,
    routed: Arc<Mutex<Vec<Routed>>>,
    stop: Arc<AtomicBool>,
}

/// The largest request head the balancer reads before routing.
const MAX_HEAD: usize = 64 * 1024;

impl Balancer {
    pub fn start(backends: Vec<SocketAddr>, route: fn(&str) -> usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let routed: Arc<Mutex<Vec<Routed>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (routed_in, stop_in) = (routed.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop_in.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let (backends, routed) = (backends.clone(), routed_in.clone());
                std::thread::spawn(move || {
                    let _ = relay(client, &backends, route, &routed);
                });
            }
        });
        Self { addr, routed, stop }
    }

    /// The connections routed so far, in order.
    pub fn routed(&self) -> Vec<Routed> {
        self.routed.lock().unwrap().clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads the request head, routes it, forwards it with `Connection: close`
/// and then copies bytes both ways until the backend closes.
fn relay(
    mut client: TcpStream,
    backends: &[SocketAddr],
    route: fn(&str) -> usize,
    routed: &Mutex<Vec<Routed>>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Ok(());
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let backend = route(&request_line);
    routed.lock().unwrap().push(Routed {
        at: Instant::now(),
        request_line,
        backend,
    });
    let mut rewritten: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    rewritten.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(backends[backend])?;
    server.set_read_timeout(Some(Duration::from_secs(60)))?;
    server.write_all(rewritten.as_bytes())?;
    server.write_all(&buf[head_end..])?;
    let (mut up_from, mut up_to) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_from, &mut up_to);
        let _ = up_to.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

/// A whole HTTP response.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, or `null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on its own connection, the whole answer read within
/// `timeout`. A refused, reset or cut connection, or no whole answer in
/// time, is an `Err` (a client retries those on another replica).
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> std::io::Result<HttpReply> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{method} {path}: no whole answer within {timeout:?}"),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    parse_reply(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "{method} {path}: not a whole HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            ),
        )
    })
}

fn parse_reply(raw: &[u8]) -> Option<HttpReply> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[head_end..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.parse().ok()?;
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(HttpReply {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body; `None` when it is cut before its last chunk.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
