//! One client socket, one file descriptor: the stream russh reads and writes,
//! and a [`Killer`] that can shut the same socket down under it.
//!
//! russh's session task cannot be aborted from outside, so a connection that
//! ignores the disconnect message (or never finishes its handshake) is ended
//! by shutting its socket down: russh then reads end-of-file and stops. Both
//! handles share one `TcpStream` (readiness-based I/O through `&TcpStream`),
//! where a `try_clone` would cost a second descriptor per connection and halve
//! how many clients fit under the process's file limit (issue 13).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The client socket as russh uses it.
#[derive(Debug)]
pub struct SharedStream {
    socket: Arc<TcpStream>,
    /// Set once a line end has been read (the client's version line).
    line_read: Arc<AtomicBool>,
}

/// Shuts the socket of a [`SharedStream`] down, and tells whether the client
/// has sent its version line.
#[derive(Debug, Clone)]
pub struct Killer {
    socket: Arc<TcpStream>,
    line_read: Arc<AtomicBool>,
}

/// Splits `socket` into the stream for russh and its killer (same descriptor).
pub fn share(socket: TcpStream) -> (SharedStream, Killer) {
    let socket = Arc::new(socket);
    let line_read = Arc::new(AtomicBool::new(false));
    (
        SharedStream {
            socket: socket.clone(),
            line_read: line_read.clone(),
        },
        Killer { socket, line_read },
    )
}

impl Killer {
    /// Shuts both directions down: the peer sees the connection end and the
    /// session reading the socket gets end-of-file.
    pub fn kill(&self) {
        let _ = rustix::net::shutdown(&*self.socket, rustix::net::Shutdown::Both);
    }
}

impl crate::admission::Progress for Killer {
    /// Whether the client's version line (which ends with a line feed) has
    /// arrived: already read by the session, or waiting in the socket's
    /// receive queue (peeked, not consumed) while a busy bastion has not got
    /// to it yet.
    fn identified(&self) -> bool {
        if self.line_read.load(Ordering::Relaxed) {
            return true;
        }
        let mut buf = [0u8; 256];
        let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
        match rustix::net::recv(&*self.socket, &mut buf[..], flags) {
            Ok((n, _)) => buf.get(..n).is_some_and(|b| b.contains(&b'\n')),
            Err(_) => false,
        }
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.socket.poll_read_ready(cx))?;
            match self.socket.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    let start = buf.filled().len();
                    buf.advance(n);
                    if buf
                        .filled()
                        .get(start..)
                        .is_some_and(|b| b.contains(&b'\n'))
                    {
                        self.line_read.store(true, Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; `try_read` cleared it, so the next
                // poll registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A TCP socket has no user-space buffer to flush.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(
            rustix::net::shutdown(&*self.socket, rustix::net::Shutdown::Write)
                .map_err(io::Error::from),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn reads_writes_and_kill_ends_both_sides() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (mut stream, killer) = share(server);
        use crate::admission::Progress as _;
        client.write_all(b"SSH-2.0-").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!killer.identified(), "a partial version line");
        client.write_all(b"x\r\nping").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(killer.identified(), "a version line waiting in the queue");
        let mut buf = [0u8; 4];
        let mut line = [0u8; 11];
        stream.read_exact(&mut line).await.unwrap();
        assert!(killer.identified(), "a version line already read");
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        stream.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        // A pending read on the shared stream ends when the killer fires.
        let reader = tokio::spawn(async move {
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.map(|_| rest.len())
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        killer.kill();
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("read ends after kill")
            .unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let mut rest = Vec::new();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut rest),
        )
        .await
        .expect("client sees the end");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
}
