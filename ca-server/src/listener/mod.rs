//! Accepting HTTP connections under limits: a header read timeout (which
//! also closes idle keep-alive connections), one deadline per request body,
//! caps on open connections in total and per client address, and the file
//! descriptor limit raised at start-up. A slow or idle client costs one
//! connection slot for a bounded time and never blocks `accept`.

mod body;
mod caps;

pub use body::BodyTimedOut;
pub use caps::{Cap, ConnectionCounts, ConnectionStats};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::config::ServerLimits;
use caps::Caps;

/// File descriptors kept back for the database, key files, logs and
/// outgoing connections when the connection cap is fitted to the fd limit.
const FD_RESERVE: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs both; returns
/// the soft limit in force afterwards (None when unlimited or unknown).
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
    let after = getrlimit(Resource::Nofile);
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    tracing::info!(
        soft_before = show(before.current),
        hard = show(before.maximum),
        soft_now = show(after.current),
        "open-file limit (RLIMIT_NOFILE)"
    );
    after.current
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes,
/// then lets in-flight requests finish. The connection cap is fitted to the
/// open-file limit ([`raise_fd_limit`] runs first, in `Application::build_on`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ServerLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let fd_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let max_total = fitted_cap(limits.max_connections, fd_limit);
    let caps = Arc::new(Caps::new(
        max_total,
        limits.max_connections_per_address.min(max_total),
        stats,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let warned = RateLimitedWarning::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: say so, and let other tasks close files.
                    warned.warn(|| tracing::warn!(error = %e, "cannot accept a connection"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match caps.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                // Closed at once: an idle flood never holds a slot it was refused.
                drop(stream);
                warned.warn(|| {
                    tracing::warn!(
                        peer = %peer.ip(),
                        cap = match cap {
                            Cap::Total => "server.max_connections",
                            Cap::PerAddress => "server.max_connections_per_address",
                        },
                        "connection refused: a connection cap is reached"
                    );
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|b| body::with_deadline(b, body_timeout));
            // Client addresses feed the rate limits and the audit trail's source.
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// `configured`, lowered when the open-file limit could not hold it.
fn fitted_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return configured;
    };
    let room = usize::try_from(limit.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            configured,
            fitted = room,
            fd_limit = limit,
            "server.max_connections lowered to fit the open-file limit; raise the hard RLIMIT_NOFILE (systemd LimitNOFILE=)"
        );
        room
    } else {
        configured
    }
}

/// Logs a warning at most once per interval, so that a flood is visible
/// in the log without flooding it.
#[derive(Debug)]
struct RateLimitedWarning {
    start: Instant,
    last: AtomicU64,
}

impl Default for RateLimitedWarning {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(u64::MAX),
        }
    }
}

impl RateLimitedWarning {
    const EVERY_SECS: u64 = 10;

    fn warn(&self, log: impl FnOnce()) {
        let now = self.start.elapsed().as_secs();
        let last = self.last.load(Ordering::Relaxed);
        if last == u64::MAX || now >= last.saturating_add(Self::EVERY_SECS) {
            self.last.store(now, Ordering::Relaxed);
            log();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_fd_limit() {
        assert_eq!(fitted_cap(4096, None), 4096);
        assert_eq!(fitted_cap(4096, Some(1_048_576)), 4096);
        assert_eq!(fitted_cap(4096, Some(1024)), 1024 - 128);
    }
}
