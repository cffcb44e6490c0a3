//! The loopback listener of `tpa-ssh login`: it waits on 127.0.0.1 for the
//! browser's redirect from the CA (`/callback?code=…` or
//! `?error=access_denied`). Each connection is served on its own task with a
//! short limit, so idle or slow local connections cannot stall the redirect
//! (issue 18).

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// The listener's own path, where the CA sends the browser back (not a CA
/// path: the CA only echoes the redirect URI it was given).
const CALLBACK_PATH: &str = "/callback";

/// The redirect URI of a listener on 127.0.0.1:`port`.
pub fn redirect_uri(port: u16) -> String {
    format!("http://127.0.0.1:{port}{CALLBACK_PATH}")
}

/// What the CA's redirect to the loopback listener carried.
#[derive(Debug, PartialEq, Eq)]
enum Callback {
    /// The one-time code of an approved login.
    Code(String),
    /// The person denied the login in the browser (`error=access_denied`).
    Denied,
}

/// The answer in a loopback request line `GET /callback?code=… HTTP/1.1`
/// (or `?error=access_denied`).
fn callback_from_request_line(line: &str) -> Option<Callback> {
    let target = line.strip_prefix("GET ")?.split(' ').next()?;
    let query = target.strip_prefix(CALLBACK_PATH)?.strip_prefix('?')?;
    if query.split('&').any(|pair| pair == "error=access_denied") {
        return Some(Callback::Denied);
    }
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("code="))
        .filter(|c| {
            !c.is_empty()
                && c.len() <= 512
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        })
        .map(|c| Callback::Code(c.to_owned()))
}

async fn reply(stream: &mut tokio::net::TcpStream, status: &str, text: &str) {
    let body = format!("<!doctype html><meta charset=utf-8><title>tpa-ssh</title><p>{text}</p>");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

/// How long one connection to the loopback listener may take to send its
/// request line. Connections are served concurrently, so an idle one holds
/// only itself, and only this long (issue 18: one at a time with a 10 s
/// read let a local process stall the callback with idle connections).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// Reads one connection's request line and answers it: `Some` with the
/// callback's outcome, `None` for anything else (or nothing in time).
async fn serve_connection(mut stream: tokio::net::TcpStream) -> Option<anyhow::Result<String>> {
    let mut buf = Vec::with_capacity(1024);
    let read_line = async {
        let mut chunk = [0u8; 1024];
        while !buf.contains(&b'\n') && buf.len() < 8192 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
    };
    if tokio::time::timeout(CONNECTION_TIMEOUT, read_line)
        .await
        .is_err()
    {
        return None;
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    match head.lines().next().and_then(callback_from_request_line) {
        Some(Callback::Code(code)) => {
            reply(
                &mut stream,
                "200 OK",
                "You are logged in to TPA. Go back to the terminal and check the account it names.",
            )
            .await;
            Some(Ok(code))
        }
        Some(Callback::Denied) => {
            reply(
                &mut stream,
                "200 OK",
                "You denied this tpa-ssh login. It stays logged out; you can close this tab.",
            )
            .await;
            Some(Err(anyhow::anyhow!(
                "the login was denied in the browser; run `tpa-ssh login` again if that was a mistake"
            )))
        }
        None => {
            reply(
                &mut stream,
                "400 Bad Request",
                "This is tpa-ssh's login listener; it expected the CA's redirect.",
            )
            .await;
            None
        }
    }
}

/// Waits for the browser's redirect to the loopback listener; returns the
/// code. Each connection is served on its own task with
/// [`CONNECTION_TIMEOUT`], so idle or slow connections cannot hold up the
/// CA's redirect.
pub async fn wait_for_code(listener: &TcpListener) -> anyhow::Result<String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<String>>(1);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = accepted.context("the loopback listener failed")?;
                if !peer.ip().is_loopback() {
                    continue;
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(answer) = serve_connection(stream).await {
                        let _ = tx.send(answer).await;
                    }
                    drop(slot);
                });
            }
            Some(answer) = rx.recv() => return answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: idle or half-sent connections to the loopback listener
    /// cannot stall the CA's redirect. Before, connections were read one at
    /// a time with a 10 s timeout each, so three idle ones delayed the
    /// callback by 30 s.
    #[tokio::test]
    async fn idle_connections_do_not_stall_the_loopback_listener() {
        use tokio::net::TcpStream;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let waiting = tokio::spawn(async move { wait_for_code(&listener).await });
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /call").await.unwrap();
        idle.push(half);
        let started = std::time::Instant::now();
        let mut browser = TcpStream::connect(addr).await.unwrap();
        browser
            .write_all(b"GET /callback?code=the-code HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let code = tokio::time::timeout(Duration::from_secs(20), waiting)
            .await
            .expect("the listener answered")
            .unwrap()
            .unwrap();
        assert_eq!(code, "the-code");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "stalled by idle connections: {:?}",
            started.elapsed()
        );
        let mut answer = String::new();
        browser.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        drop(idle);
    }

    /// An idle connection is closed after the per-connection timeout.
    #[tokio::test]
    async fn an_idle_connection_is_closed_after_a_short_timeout() {
        use tokio::net::TcpStream;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let waiting = tokio::spawn(async move { wait_for_code(&listener).await });
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut rest))
            .await
            .expect("closed by the listener");
        assert!(closed.is_ok());
        assert!(
            started.elapsed() < CONNECTION_TIMEOUT + Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        waiting.abort();
    }

    #[test]
    fn loopback_request_lines() {
        let code = |c: &str| Some(Callback::Code(c.to_owned()));
        let check = |line: &str, expected: Option<Callback>| {
            assert_eq!(callback_from_request_line(line), expected, "{line}");
        };
        check("GET /callback?code=abc-123 HTTP/1.1", code("abc-123"));
        check("GET /callback?x=1&code=Z HTTP/1.1", code("Z"));
        check("GET /other?code=abc HTTP/1.1", None);
        check("POST /callback?code=abc HTTP/1.1", None);
        check("GET /callback?code= HTTP/1.1", None);
        check("GET /callback?code=a%0d%0a HTTP/1.1", None);
        check(
            "GET /callback?error=access_denied HTTP/1.1",
            Some(Callback::Denied),
        );
        check("GET /callback?error=other HTTP/1.1", None);
    }
}
