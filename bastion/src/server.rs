//! The russh server: accept loop, per-connection limits and timers, and the
//! SSH handler that admits certificates and opens forwards.
//!
//! Each TCP connection holds a slot of [`Admission`] (separate budgets for
//! unauthenticated and authenticated connections; a flood evicts its own
//! oldest idle connections, not clients that are authenticating) and is one
//! task that owns its timers: the handshake deadline (`handshake_timeout`,
//! version line and key exchange), the pre-authentication deadline
//! (`auth_timeout`), then the earlier of the certificate's
//! `valid_before` and the request window's end (from the revocation feed), a
//! revocation of its key id or serial (the task watches the shared [`Trust`]),
//! and the bastion-wide shutdown signal. Whichever comes first ends the
//! connection with an SSH disconnect message naming the reason, and the
//! session records of its forwards carry that reason. A key's probe is
//! answered only for the keys of unexpired TPA certificates (the feed's
//! `certified_keys`),
//! so the client never signs with a plain key; a refused TPA certificate and
//! a refused forward are explained to the client in words (a
//! keyboard-interactive instruction, a disconnect message). russh handles the protocol:
//! strict key exchange (its default `kex` list includes
//! `kex-strict-s-v00@openssh.com`), the inactivity timeout, and the cap on
//! rejected authentication attempts.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::SecondsFormat;

use russh::keys::ssh_key::{Certificate, HashAlg, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, compression};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tpa_core::api::SessionRecord;

use crate::admission::{Admission, Budgets, Stage, Ticket};
use crate::auth::{self, Grant, Rejection, Trust};
use crate::config::{BastionConfig, Inventory, Limits};
use crate::events::{self, ConnectionEnd, ConnectionId, Event, EventSink, ForwardEnd};
use crate::feed::PollRequests;
use crate::forward;
use crate::socket::{self, Killer};

/// How long a connection gets to finish after its disconnect message, before
/// its socket is shut down under it.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);
/// How long the bastion waits for connections to end at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Bound on connecting to a host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a login whose request the feed does not list as active waits for
/// an immediate poll of the feed (a certificate fetched a moment ago).
const FRESH_REQUEST_WAIT: Duration = Duration::from_secs(3);
/// Delay before answering a rejected authentication. Constant, so the
/// rejections the client is not told about (plain keys, other CAs'
/// certificates) take the same time as the ones it is told about; short,
/// because a client may offer several plain keys before its certificate.
const AUTH_REJECTION_TIME: Duration = Duration::from_millis(100);
/// How long an evicted connection's disconnect message may take.
const EVICTION_GRACE: Duration = Duration::from_millis(200);
/// How long the first probe of a key the feed does not list waits for a poll
/// of the feed that started after the connection was accepted (a certificate
/// issued just before `ssh` ran). Later unknown keys are refused at once.
const PROBE_POLL_WAIT: Duration = Duration::from_secs(2);

/// What every connection shares.
#[derive(Debug)]
struct Shared {
    inventory: Inventory,
    limits: Limits,
    trust: watch::Receiver<Arc<Trust>>,
    sink: Arc<dyn EventSink>,
    next_connection: AtomicU64,
    /// Asks the revocation feed for a poll soon.
    polls: Arc<PollRequests>,
}

impl Shared {
    fn emit(&self, event: Event) {
        events::log(&event);
        self.sink.record(&event);
    }
}

/// A bound, ready-to-run bastion.
#[derive(Debug)]
pub struct Bastion {
    listener: TcpListener,
    ssh: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    trust_updates: watch::Sender<Arc<Trust>>,
}

/// The russh configuration the bastion runs with.
pub fn ssh_config(host_key: PrivateKey, limits: &Limits) -> russh::server::Config {
    // Compression off: no compression oracle, no decompression bombs.
    let preferred = russh::Preferred {
        compression: Cow::Borrowed(&[compression::NONE]),
        ..Default::default()
    };
    russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-tpa-bastion")),
        // Public keys only; within them, only certificates can succeed.
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: AUTH_REJECTION_TIME,
        // OpenSSH probes with "none" first; answering that at once is harmless.
        auth_rejection_time_initial: Some(Duration::from_millis(10)),
        keys: vec![host_key],
        preferred,
        max_auth_attempts: limits.max_auth_attempts,
        inactivity_timeout: Some(limits.inactivity_timeout),
        nodelay: true,
        ..Default::default()
    }
}

impl Bastion {
    /// Binds `config.listen` with `host_key`, trusting `trust`.
    pub async fn bind(
        config: &BastionConfig,
        host_key: PrivateKey,
        trust: Trust,
        sink: Arc<dyn EventSink>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let (trust_updates, trust_rx) = watch::channel(Arc::new(trust));
        Ok(Self {
            listener,
            ssh: Arc::new(ssh_config(host_key, &config.limits)),
            shared: Arc::new(Shared {
                inventory: config.inventory.clone(),
                limits: config.limits.clone(),
                trust: trust_rx,
                sink,
                next_connection: AtomicU64::new(1),
                polls: Arc::default(),
            }),
            trust_updates,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Notified when a login needs the revocation feed polled at once (hand
    /// it to [`crate::feed::run`]).
    pub fn poll_requests(&self) -> Arc<PollRequests> {
        self.shared.polls.clone()
    }

    /// A sender that replaces the trusted keys and revocations for new checks.
    pub fn trust_updates(&self) -> watch::Sender<Arc<Trust>> {
        self.trust_updates.clone()
    }

    /// Serves until `shutdown` completes, then disconnects every client and
    /// waits (bounded) for their connections to end.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) {
        let limits = &self.shared.limits;
        let admission = Admission::new(Budgets {
            unauthenticated: limits.max_unauthenticated,
            unauthenticated_per_address: limits.max_unauthenticated_per_address,
            authenticated: limits.max_connections,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    // russh's session task cannot be aborted from here, so a
                    // connection that ignores the disconnect message is
                    // ended by shutting its socket down.
                    let (socket, killer) = socket::share(socket);
                    let ticket = admission.admit(peer.ip(), Arc::new(killer.clone()));
                    let shared = self.shared.clone();
                    let ssh = self.ssh.clone();
                    let stop = stop_rx.clone();
                    connections.spawn(serve_connection(Accepted { socket, killer, peer, ticket }, ssh, shared, stop));
                }
                // Reap finished connection tasks so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!(
            connections = connections.len(),
            "shutting down: closing connections"
        );
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
        }
    }
}

/// Authentication progress of one connection, shared between the handler and
/// the connection task.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Version exchange and key exchange.
    Handshake,
    /// Key exchange done; no accepted certificate yet.
    Authenticating,
    Authenticated(Arc<Grant>),
}

/// Why the bastion cut a connection, set once by the connection task before
/// it disconnects, read by the forwards for their session records.
type CutReason = Arc<OnceLock<ConnectionEnd>>;

/// One accepted connection and its slot.
struct Accepted {
    socket: socket::SharedStream,
    killer: Killer,
    peer: SocketAddr,
    ticket: Ticket,
}

async fn serve_connection(
    accepted: Accepted,
    ssh: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let Accepted {
        socket,
        killer,
        peer,
        mut ticket,
    } = accepted;
    let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let accepted = Instant::now();
    let auth_deadline = accepted + shared.limits.auth_timeout;
    let handshake_deadline = (accepted + shared.limits.handshake_timeout).min(auth_deadline);
    let (phase_tx, mut phase_rx) = watch::channel(Phase::Handshake);
    let mut trust_rx = shared.trust.clone();
    let cut: CutReason = Arc::default();
    let handler = Connection {
        connection,
        peer,
        shared: shared.clone(),
        phase: phase_tx,
        grant: None,
        cut: cut.clone(),
        forwards: Arc::new(Semaphore::new(shared.limits.max_forwards_per_connection)),
        accepted,
        waited_for_poll: false,
        refusal: None,
    };
    // The version exchange happens inside run_stream: bound it by the
    // handshake deadline, and give the slot up at once when evicted.
    let started = tokio::select! {
        started = tokio::time::timeout_at(
            handshake_deadline,
            russh::server::run_stream(ssh, socket, handler),
        ) => Some(started),
        () = ticket.evicted() => None,
    };
    let session = match started {
        Some(Ok(Ok(session))) => session,
        Some(Ok(Err(e))) => {
            tracing::debug!(connection, %peer, error = %e, "SSH setup failed");
            return;
        }
        Some(Err(_)) | None => {
            killer.kill();
            let end = if started.is_none() {
                ConnectionEnd::Evicted
            } else {
                ConnectionEnd::HandshakeTimeout
            };
            shared.emit(Event::ConnectionEnded { connection, end });
            return;
        }
    };
    // run_stream returns once the client's version line has arrived.
    ticket.advance(Stage::Identified);
    let handle = session.handle();
    tokio::pin!(session);
    let mut phase_open = true;
    let mut trust_open = true;
    let mut authenticated = false;
    let end = loop {
        let phase = phase_rx.borrow_and_update().clone();
        let (deadline, end_at_deadline) = match &phase {
            Phase::Handshake if handshake_deadline < auth_deadline => {
                (handshake_deadline, ConnectionEnd::HandshakeTimeout)
            }
            Phase::Handshake => (auth_deadline, ConnectionEnd::AuthTimeout),
            Phase::Authenticating => {
                ticket.advance(Stage::KeyExchanged);
                (auth_deadline, ConnectionEnd::AuthTimeout)
            }
            Phase::Authenticated(grant) => {
                if !authenticated {
                    if let Err(full) = ticket.authenticate() {
                        tracing::warn!(connection, %peer, "{full}");
                        let end = ConnectionEnd::Full;
                        let _ = cut.set(end.clone());
                        disconnect(
                            &handle,
                            end.disconnect_message(),
                            &mut session,
                            &killer,
                            DISCONNECT_GRACE,
                        )
                        .await;
                        break end;
                    }
                    authenticated = true;
                }
                let trust = trust_rx.borrow_and_update().clone();
                if trust.revokes(grant) {
                    let end = ConnectionEnd::AccessRevoked;
                    let _ = cut.set(end.clone());
                    disconnect(
                        &handle,
                        end.disconnect_message(),
                        &mut session,
                        &killer,
                        DISCONNECT_GRACE,
                    )
                    .await;
                    break end;
                }
                let (at, window) = trust.deadline(grant);
                let end = if window {
                    ConnectionEnd::WindowEnded
                } else {
                    ConnectionEnd::CertificateExpired
                };
                (instant_at_unix(at), end)
            }
        };
        tokio::select! {
            result = &mut session => {
                break match result {
                    Ok(()) => cut.get().cloned().unwrap_or(ConnectionEnd::ClientClosed),
                    Err(e) => ConnectionEnd::Error(e.to_string()),
                };
            }
            changed = phase_rx.changed(), if phase_open => {
                if changed.is_err() {
                    phase_open = false;
                }
            }
            // A new revocation feed or trust: re-check at the top of the loop.
            changed = trust_rx.changed(), if trust_open => {
                if changed.is_err() {
                    trust_open = false;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let _ = cut.set(end_at_deadline.clone());
                // A client stuck in its handshake is not waiting for words.
                let grace = if end_at_deadline == ConnectionEnd::HandshakeTimeout {
                    EVICTION_GRACE
                } else {
                    DISCONNECT_GRACE
                };
                disconnect(&handle, end_at_deadline.disconnect_message(), &mut session, &killer, grace).await;
                break end_at_deadline;
            }
            () = ticket.evicted(), if !authenticated => {
                let end = ConnectionEnd::Evicted;
                let _ = cut.set(end.clone());
                disconnect(&handle, end.disconnect_message(), &mut session, &killer, EVICTION_GRACE).await;
                break end;
            }
            _ = stop.changed() => {
                let end = ConnectionEnd::Shutdown;
                let _ = cut.set(end.clone());
                disconnect(&handle, end.disconnect_message(), &mut session, &killer, DISCONNECT_GRACE).await;
                break end;
            }
        }
    };
    shared.emit(Event::ConnectionEnded { connection, end });
}

/// Sends an SSH disconnect with `reason`, waits (at most `grace`) for the
/// session to end, then shuts the socket down whatever state the session is in.
async fn disconnect<F: std::future::Future + Unpin>(
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

/// The SSH handler of one connection.
#[derive(Debug)]
struct Connection {
    connection: ConnectionId,
    peer: SocketAddr,
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    /// Set only when a certificate was accepted, for the login of that attempt.
    grant: Option<Arc<Grant>>,
    /// Why the bastion cut this connection, once it has.
    cut: CutReason,
    /// One permit per `direct-tcpip` forward open or opening on this connection.
    forwards: Arc<Semaphore>,
    /// When the connection was accepted.
    accepted: Instant,
    /// Whether a probe already waited for a fresh poll of the feed.
    waited_for_poll: bool,
    /// Why the last TPA certificate was refused, shown to the client as the
    /// instruction of a keyboard-interactive request.
    refusal: Option<String>,
}

impl Connection {
    /// Rejects a certificate: logged and reported like every rejection, and
    /// explained to the client when a trusted CA signed it (a TPA
    /// certificate; another CA's certificate may be meant for another server).
    fn reject_certificate(
        &mut self,
        login: &str,
        cert: &Certificate,
        rejection: &Rejection,
    ) -> Auth {
        let ours = self
            .shared
            .trust
            .borrow()
            .cas
            .contains(cert.signature_key());
        let auth = self.reject(login, rejection);
        if !ours {
            return auth;
        }
        // Issue 12: a failure message carries no text, and unpatched russh
        // sends no banner after the first. The reason goes into the
        // instruction of a keyboard-interactive request, which the client
        // tries once its other keys are spent (docs/security-model.md).
        self.refusal = Some(format!(
            "tpa-bastion: certificate serial {} refused for login {:?}: {rejection}.\r\nWhat to do: {}.\r\n",
            cert.serial(),
            login.escape_debug().to_string(),
            auth::advice(rejection)
        ));
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..],
            )),
            partial_success: false,
        }
    }

    /// Whether `fingerprint` is the subject key of an unexpired TPA
    /// certificate. The first unknown key of a connection waits (bounded) for a
    /// poll of the feed that started after the connection was accepted, so a
    /// certificate issued before `ssh` ran is always found.
    async fn certified_key(&mut self, fingerprint: &str) -> bool {
        let known = |trust: &Trust| {
            trust
                .certified_keys
                .as_ref()
                .is_none_or(|keys| keys.contains(fingerprint))
        };
        if known(&self.shared.trust.borrow()) {
            return true;
        }
        if self.waited_for_poll {
            return false;
        }
        self.waited_for_poll = true;
        let deadline = Instant::now() + PROBE_POLL_WAIT;
        self.shared
            .polls
            .finished_since(self.accepted, deadline)
            .await;
        known(&self.shared.trust.borrow())
    }

    fn reject(&self, login: &str, rejection: &Rejection) -> Auth {
        self.shared.emit(Event::AuthRejected {
            connection: self.connection,
            peer: Some(self.peer),
            login: login.escape_debug().to_string(),
            reason: rejection.to_string(),
        });
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    fn refuse_channel(&self, request: String, reason: &str) {
        self.shared.emit(Event::ChannelRefused {
            connection: self.connection,
            peer: Some(self.peer),
            login: self.grant.as_ref().map(|g| g.login.clone()),
            grant_request: self.grant.as_ref().map(|g| g.request.to_string()),
            request,
            reason: reason.to_owned(),
        });
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(self.reject(user, &Rejection::Method("password")))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        // Offered only after a refused TPA certificate, to say why: an info
        // request with the reason and no prompt; its answer is refused. It
        // never accepts anyone.
        match (response, self.refusal.take()) {
            (None, Some(reason)) => Ok(Auth::Partial {
                name: Cow::Borrowed(""),
                instructions: Cow::Owned(reason),
                prompts: Cow::Borrowed(&[]),
            }),
            (Some(_), _) => Ok(Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
                partial_success: false,
            }),
            (None, None) => Ok(self.reject(user, &Rejection::Method("keyboard-interactive"))),
        }
    }

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        // The client asks for authentication once its key exchange is done.
        self.phase.send_if_modified(|phase| {
            let first = *phase == Phase::Handshake;
            if first {
                *phase = Phase::Authenticating;
            }
            first
        });
        Ok(None)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Issue 13: only the key of an unexpired TPA certificate gets
        // "key accepted", so the client never signs with a plain key (no
        // security-key touch, no attempt spent). russh shows us the
        // certificate's subject key only; the certificate itself is checked in
        // full at the signed attempt.
        let fingerprint = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        if self.certified_key(&fingerprint).await {
            Ok(Auth::Accept)
        } else {
            Ok(self.reject(user, &Rejection::UnknownKey(fingerprint)))
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        Ok(self.reject(user, &Rejection::PlainKey(fingerprint)))
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let peer = Some(self.peer.ip());
        let mut trust_rx = self.shared.trust.clone();
        let trust = trust_rx.borrow_and_update().clone();
        let mut result =
            auth::check_certificate(certificate, user, chrono::Utc::now(), &trust, peer);
        if let Err(Rejection::RequestNotActive(_)) = result {
            // A certificate fetched a moment ago: ask the feed now and wait
            // (bounded) for it to list the request.
            self.shared.polls.ask();
            let deadline = Instant::now() + FRESH_REQUEST_WAIT;
            while let Ok(Ok(())) = tokio::time::timeout_at(deadline, trust_rx.changed()).await {
                let trust = trust_rx.borrow_and_update().clone();
                result =
                    auth::check_certificate(certificate, user, chrono::Utc::now(), &trust, peer);
                if !matches!(result, Err(Rejection::RequestNotActive(_))) {
                    break;
                }
            }
        }
        match result {
            Ok(grant) => {
                self.grant = Some(Arc::new(grant));
                Ok(Auth::Accept)
            }
            Err(rejection) => {
                tracing::debug!(
                    certificate = auth::describe(certificate),
                    "certificate refused"
                );
                Ok(self.reject_certificate(user, certificate, &rejection))
            }
        }
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        // russh calls this only after an `Accept`, which only a certificate gives.
        let Some(grant) = &self.grant else {
            return Err(russh::Error::Inconsistent);
        };
        self.shared.emit(Event::Authenticated {
            connection: self.connection,
            peer: Some(self.peer),
            login: grant.login.clone(),
            serial: grant.serial,
            key_id: grant.key_id.clone(),
            request: grant.request.to_string(),
            valid_before: grant.valid_before,
        });
        let _ = self.phase.send(Phase::Authenticated(grant.clone()));
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel(
            "session".to_owned(),
            "shell, exec and subsystems are not available; use ssh -J",
        );
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("x11".to_owned(), "X11 forwarding is not available");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel(
            "forwarded-tcpip".to_owned(),
            "remote forwarding is not available",
        );
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel(
            "direct-streamlocal".to_owned(),
            "Unix socket forwarding is not available",
        );
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse_channel(
            "tcpip-forward".to_owned(),
            "remote forwarding is not available",
        );
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse_channel(
            "streamlocal-forward".to_owned(),
            "remote forwarding is not available",
        );
        Ok(false)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = format!(
            "direct-tcpip {}:{port_to_connect}",
            host_to_connect.escape_debug()
        );
        let Some(grant) = self.grant.clone() else {
            self.refuse_channel(request, "not authenticated");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let (name, address) = match forward::authorize(
            &grant,
            &self.shared.inventory,
            host_to_connect,
            port_to_connect,
        ) {
            Ok(target) => target,
            Err(refusal) => {
                self.refuse_channel(request, &refusal.to_string());
                // Issue 12: the reason in words. When no other forward is
                // open on this connection (`ssh -J`, `ssh -W`), a disconnect
                // message carries it (OpenSSH prints "Received disconnect
                // from …: <reason>"); it goes out before the channel failure,
                // after which `ssh -W` exits. Otherwise only this channel is
                // refused: a sibling forward is never cut.
                let only = self.forwards.available_permits()
                    == self.shared.limits.max_forwards_per_connection;
                if only {
                    let text = format!(
                        "tpa-bastion: {refusal}. What to do: {}.",
                        forward::advice(&refusal)
                    );
                    let _ = self.cut.set(ConnectionEnd::Refused(text.clone()));
                    let _ = session.disconnect(Disconnect::ByApplication, &text, "");
                }
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return Ok(());
            }
        };
        let Ok(permit) = self.forwards.clone().try_acquire_owned() else {
            let limit = self.shared.limits.max_forwards_per_connection;
            self.refuse_channel(
                request,
                &format!("too many forwards on this connection (limit {limit})"),
            );
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        // Connect and pump in a task: the session keeps serving other channels.
        let shared = self.shared.clone();
        let connection = self.connection;
        let peer = self.peer;
        let cut = self.cut.clone();
        tokio::spawn(async move {
            let connect = TcpStream::connect((address.host.as_str(), address.port));
            let connected = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(e)) => Err(format!("cannot connect to {name} at {address}: {e}")),
                Err(_) => Err(format!("connecting to {name} at {address} timed out")),
            };
            let stream = match connected {
                Ok(stream) => stream,
                Err(reason) => {
                    shared.emit(Event::ChannelRefused {
                        connection,
                        peer: Some(peer),
                        login: Some(grant.login.clone()),
                        grant_request: Some(grant.request.to_string()),
                        request,
                        reason,
                    });
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            reply.accept().await;
            let started_at = chrono::Utc::now();
            let session_id = format!("ses_{:032x}", rand::random::<u128>());
            shared.emit(Event::ForwardStarted {
                connection,
                host: name.to_string(),
                address: address.to_string(),
            });
            // What the CA gets if the bastion dies before this forward ends.
            let target_address = address.to_string();
            let record = |counts, forward_end: &ForwardEnd, cut| {
                session_record(SessionFacts {
                    session_id: &session_id,
                    grant: &grant,
                    peer,
                    target: name.as_str(),
                    target_address: &target_address,
                    started_at,
                    counts,
                    forward_end,
                    cut,
                })
            };
            let crashed = record(
                forward::ByteCounts::default(),
                &ForwardEnd::Error(CRASH_ERROR.to_owned()),
                None,
            );
            let crashed = SessionRecord {
                ended_at: crashed.started_at.clone(),
                ..crashed
            };
            shared.emit(Event::SessionStarted(Box::new(crashed)));
            let (counts, end) = forward::pump(channel, stream).await;
            let record = record(counts, &end, cut.get());
            shared.emit(Event::ForwardEnded {
                connection,
                host: name.to_string(),
                bytes_to_host: counts.to_host,
                bytes_from_host: counts.from_host,
                end,
            });
            shared.emit(Event::SessionRecord(Box::new(record)));
            drop(permit);
        });
        Ok(())
    }
}

/// The error of the record of a forward the bastion did not see end.
const CRASH_ERROR: &str =
    "the bastion stopped before this session ended; its end time and byte counts are unknown";

/// What a session record is made of.
struct SessionFacts<'a> {
    session_id: &'a str,
    grant: &'a Grant,
    peer: SocketAddr,
    target: &'a str,
    target_address: &'a str,
    started_at: chrono::DateTime<chrono::Utc>,
    counts: forward::ByteCounts,
    forward_end: &'a ForwardEnd,
    cut: Option<&'a ConnectionEnd>,
}

/// The record of one forward that just ended. When the bastion cut the
/// connection, that is how it ended; otherwise whichever side closed first.
fn session_record(facts: SessionFacts<'_>) -> SessionRecord {
    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let (end, error) = match (facts.cut, facts.forward_end) {
        (Some(ConnectionEnd::Error(e)), _) | (None, ForwardEnd::Error(e)) => {
            ("error", Some(e.clone()))
        }
        (Some(cut), _) => (cut.session_end(), None),
        (None, ForwardEnd::ClientClosed) => ("client_closed", None),
        (None, ForwardEnd::HostClosed) => ("target_closed", None),
    };
    SessionRecord {
        session_id: facts.session_id.to_owned(),
        bastion: None,
        serial: facts.grant.serial.to_string(),
        key_id: facts.grant.key_id.clone(),
        request: facts.grant.request.to_string(),
        login: facts.grant.login.clone(),
        requester: requester_of(&facts.grant.key_id).to_owned(),
        source: facts.peer.to_string(),
        target: facts.target.to_owned(),
        target_address: facts.target_address.to_owned(),
        started_at: time(facts.started_at),
        ended_at: time(chrono::Utc::now()),
        bytes_to_target: facts.counts.to_host,
        bytes_from_target: facts.counts.from_host,
        end: end.to_owned(),
        error,
    }
}

/// The requester named by a TPA key id (`tpa:request=<id>:user=<name>`).
fn requester_of(key_id: &str) -> &str {
    key_id
        .rsplit_once(":user=")
        .map_or("unknown", |(_, user)| user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::Algorithm;

    /// Security review (rev-bastion): a certificate valid "forever"
    /// (`valid_before` = 2^64-1) made the connection task panic on `Instant`
    /// overflow.
    #[tokio::test]
    async fn far_deadlines_do_not_overflow() {
        let far = instant_at_unix(u64::MAX);
        assert!(far > Instant::now() + Duration::from_secs(100 * 365 * 86_400));
        assert!(instant_at_unix(0) <= Instant::now());
    }

    #[test]
    fn protocol_settings_are_strict() {
        // Issue 6: strict key exchange, no compression, certificates by public key only.
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let limits = Limits {
            max_auth_attempts: 3,
            inactivity_timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        let c = ssh_config(key, &limits);
        assert!(
            c.preferred
                .kex
                .contains(&russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER)
        );
        assert_eq!(&*c.preferred.compression, &[compression::NONE]);
        assert_eq!(c.methods, MethodSet::from(&[MethodKind::PublicKey][..]));
        assert_eq!(c.max_auth_attempts, 3);
        assert_eq!(c.inactivity_timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.auth_rejection_time, AUTH_REJECTION_TIME);
    }
}
