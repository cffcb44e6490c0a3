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

mod connection;
mod direct_tcpip;
mod handler;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::keys::ssh_key::PrivateKey;
use russh::{MethodKind, MethodSet, compression};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admission::{Admission, Budgets, Ticket};
use crate::auth::{Grant, Trust};
use crate::config::{BastionConfig, Inventory, Limits};
use crate::events::{self, ConnectionEnd, Event, EventSink};
use crate::feed::PollRequests;
use crate::socket::{self, Killer};
use connection::serve_connection;

/// How long the bastion waits for connections to end at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Delay before answering a rejected authentication. Constant, so the
/// rejections the client is not told about (plain keys, other CAs'
/// certificates) take the same time as the ones it is told about; short,
/// because a client may offer several plain keys before its certificate.
const AUTH_REJECTION_TIME: Duration = Duration::from_millis(100);
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

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::Algorithm;

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
