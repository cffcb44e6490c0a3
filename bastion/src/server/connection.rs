//! One connection's task: the SSH handshake under its deadline, then the
//! watch over the connection's timers and signals until one of them ends it
//! (see the [`super`] docs for the list), with an SSH disconnect naming why.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::Disconnect;
use russh::server::RunningSession;
use tokio::sync::watch;
use tokio::time::Instant;

use super::handler::Connection;
use super::{Accepted, CutReason, Phase, Shared};
use crate::admission::{Stage, Ticket};
use crate::auth::{Grant, Trust};
use crate::events::{ConnectionEnd, ConnectionId, Event};
use crate::socket::Killer;

/// How long a connection gets to finish after its disconnect message, before
/// its socket is shut down under it.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);
/// How long an evicted connection's disconnect message may take.
const EVICTION_GRACE: Duration = Duration::from_millis(200);

/// Serves one accepted connection to its end, then reports how it ended.
pub(super) async fn serve_connection(
    accepted: Accepted,
    ssh: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let Accepted {
        socket,
        killer,
        peer,
        ticket,
    } = accepted;
    let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let deadlines = Deadlines::from(Instant::now(), &shared);
    let (phase_tx, phase_rx) = watch::channel(Phase::Handshake);
    let cut: CutReason = Arc::default();
    let handler = Connection::new(
        connection,
        peer,
        shared.clone(),
        phase_tx,
        cut.clone(),
        deadlines.accepted,
    );
    let started = russh::server::run_stream(ssh, socket, handler);
    let session = match handshake(started, deadlines.handshake, &ticket).await {
        Ok(session) => session,
        Err(Failed::Setup(e)) => {
            tracing::debug!(connection, %peer, error = %e, "SSH setup failed");
            return;
        }
        Err(Failed::Cut(end)) => {
            killer.kill();
            shared.emit(Event::ConnectionEnded { connection, end });
            return;
        }
    };
    // run_stream returns once the client's version line has arrived.
    ticket.advance(Stage::Identified);
    let end = watch_session(
        Watch {
            connection,
            peer,
            ticket,
            killer,
            cut,
            deadlines,
            phase: phase_rx,
            trust: shared.trust.clone(),
            stop,
            phase_open: true,
            trust_open: true,
            authenticated: false,
        },
        session,
    )
    .await;
    shared.emit(Event::ConnectionEnded { connection, end });
}

/// Why a connection ended before its version line arrived.
enum Failed {
    /// The SSH session could not start (nothing to report).
    Setup(russh::Error),
    /// The bastion cut it: handshake deadline, or evicted.
    Cut(ConnectionEnd),
}

/// The version exchange happens inside `run_stream`: it is bounded by the
/// handshake deadline, and the slot is given up at once when evicted.
async fn handshake(
    started: impl Future<Output = Result<RunningSession<Connection>, russh::Error>>,
    deadline: Instant,
    ticket: &Ticket,
) -> Result<RunningSession<Connection>, Failed> {
    tokio::select! {
        started = tokio::time::timeout_at(deadline, started) => match started {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(e)) => Err(Failed::Setup(e)),
            Err(_) => Err(Failed::Cut(ConnectionEnd::HandshakeTimeout)),
        },
        () = ticket.evicted() => Err(Failed::Cut(ConnectionEnd::Evicted)),
    }
}

/// The deadlines of a connection's first steps.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    accepted: Instant,
    /// Version line and key exchange (never after `auth`).
    handshake: Instant,
    /// An accepted certificate.
    auth: Instant,
}

impl Deadlines {
    fn from(accepted: Instant, shared: &Shared) -> Self {
        let auth = accepted + shared.limits.auth_timeout;
        Deadlines {
            accepted,
            handshake: (accepted + shared.limits.handshake_timeout).min(auth),
            auth,
        }
    }
}

/// What the connection task watches once the handshake has started.
struct Watch {
    connection: ConnectionId,
    peer: SocketAddr,
    ticket: Ticket,
    killer: Killer,
    cut: CutReason,
    deadlines: Deadlines,
    phase: watch::Receiver<Phase>,
    trust: watch::Receiver<Arc<Trust>>,
    stop: watch::Receiver<bool>,
    /// Whether the handler still holds the phase sender.
    phase_open: bool,
    /// Whether the trust sender is still there.
    trust_open: bool,
    /// Whether the connection took an authenticated slot.
    authenticated: bool,
}

async fn watch_session(mut watch: Watch, session: RunningSession<Connection>) -> ConnectionEnd {
    let handle = session.handle();
    tokio::pin!(session);
    watch.run(&handle, &mut session).await
}

impl Watch {
    /// Waits for whichever comes first: the session's own end, the current
    /// phase's deadline, an eviction (before authentication), or shutdown. A
    /// change of phase or trust re-computes the deadline.
    async fn run<F, E>(&mut self, handle: &russh::server::Handle, session: &mut F) -> ConnectionEnd
    where
        F: Future<Output = Result<(), E>> + Unpin,
        E: Display,
    {
        loop {
            let (deadline, end_at_deadline) = match self.next_deadline() {
                Ok(next) => next,
                Err(end) => return self.end(end, DISCONNECT_GRACE, handle, session).await,
            };
            tokio::select! {
                result = &mut *session => {
                    return match result {
                        Ok(()) => self.cut.get().cloned().unwrap_or(ConnectionEnd::ClientClosed),
                        Err(e) => ConnectionEnd::Error(e.to_string()),
                    };
                }
                changed = self.phase.changed(), if self.phase_open => {
                    if changed.is_err() {
                        self.phase_open = false;
                    }
                }
                // A new revocation feed or trust: re-check at the top of the loop.
                changed = self.trust.changed(), if self.trust_open => {
                    if changed.is_err() {
                        self.trust_open = false;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    // A client stuck in its handshake is not waiting for words.
                    let grace = if end_at_deadline == ConnectionEnd::HandshakeTimeout {
                        EVICTION_GRACE
                    } else {
                        DISCONNECT_GRACE
                    };
                    return self.end(end_at_deadline, grace, handle, session).await;
                }
                () = self.ticket.evicted(), if !self.authenticated => {
                    return self.end(ConnectionEnd::Evicted, EVICTION_GRACE, handle, session).await;
                }
                _ = self.stop.changed() => {
                    return self.end(ConnectionEnd::Shutdown, DISCONNECT_GRACE, handle, session).await;
                }
            }
        }
    }

    /// The deadline of the current phase and the end it means, or the end
    /// to cut the connection with now.
    fn next_deadline(&mut self) -> Result<(Instant, ConnectionEnd), ConnectionEnd> {
        let phase = self.phase.borrow_and_update().clone();
        let Deadlines {
            handshake, auth, ..
        } = self.deadlines;
        match &phase {
            Phase::Handshake if handshake < auth => {
                Ok((handshake, ConnectionEnd::HandshakeTimeout))
            }
            Phase::Handshake => Ok((auth, ConnectionEnd::AuthTimeout)),
            Phase::Authenticating => {
                self.ticket.advance(Stage::KeyExchanged);
                Ok((auth, ConnectionEnd::AuthTimeout))
            }
            Phase::Authenticated(grant) => self.grant_deadline(grant),
        }
    }

    /// An authenticated connection takes its slot (once), ends at once when
    /// its grant is revoked, else at the earlier of its certificate's expiry
    /// and its request window's end.
    fn grant_deadline(&mut self, grant: &Grant) -> Result<(Instant, ConnectionEnd), ConnectionEnd> {
        if !self.authenticated {
            if let Err(full) = self.ticket.authenticate() {
                tracing::warn!(connection = self.connection, peer = %self.peer, "{full}");
                return Err(ConnectionEnd::Full);
            }
            self.authenticated = true;
        }
        let trust = self.trust.borrow_and_update().clone();
        if trust.revokes(grant) {
            return Err(ConnectionEnd::AccessRevoked);
        }
        let (at, window) = trust.deadline(grant);
        let end = if window {
            ConnectionEnd::WindowEnded
        } else {
            ConnectionEnd::CertificateExpired
        };
        Ok((instant_at_unix(at), end))
    }

    /// Records why the bastion cut the connection (for its forwards' session
    /// records), then disconnects with that reason.
    async fn end<F: Future + Unpin>(
        &self,
        end: ConnectionEnd,
        grace: Duration,
        handle: &russh::server::Handle,
        session: &mut F,
    ) -> ConnectionEnd {
        let _ = self.cut.set(end.clone());
        disconnect(
            handle,
            end.disconnect_message(),
            session,
            &self.killer,
            grace,
        )
        .await;
        end
    }
}

/// Sends an SSH disconnect with `reason`, waits (at most `grace`) for the
/// session to end, then shuts the socket down whatever state the session is in.
async fn disconnect<F: Future + Unpin>(
    handle: &russh::server::Handle,
    reason: &str,
    session: &mut F,
    killer: &Killer,
    grace: Duration,
) {
    let ended = tokio::time::timeout(grace, async {
        let _ = handle
            .disconnect(Disconnect::ByApplication, reason.to_owned(), String::new())
            .await;
        session.await;
    })
    .await;
    if ended.is_err() {
        killer.kill();
    }
}

/// The longest wait [`instant_at_unix`] returns (about 136 years): a later
/// deadline, such as OpenSSH's "forever" `valid_before`, would overflow
/// `Instant` and panic.
const MAX_WAIT: Duration = Duration::from_secs(u32::MAX as u64);

/// The tokio instant at Unix time `unix_secs` (now, if it is already past).
fn instant_at_unix(unix_secs: u64) -> Instant {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(unix_secs)
        .saturating_sub(now_unix)
        .min(MAX_WAIT);
    let now = Instant::now();
    now.checked_add(left).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Security review (rev-bastion): a certificate valid "forever"
    /// (`valid_before` = 2^64-1) made the connection task panic on `Instant`
    /// overflow.
    #[tokio::test]
    async fn far_deadlines_do_not_overflow() {
        let far = instant_at_unix(u64::MAX);
        assert!(far > Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        assert!(instant_at_unix(0) <= Instant::now());
    }
}
