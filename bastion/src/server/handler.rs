//! The SSH handler of one connection: authentication (only TPA
//! certificates succeed; a refused one is explained in words), and channel
//! requests, of which only `direct-tcpip` is served (see [`super::direct_tcpip`]).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::{Certificate, HashAlg};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelOpenFailure, MethodKind, MethodSet};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::{CutReason, Phase, Shared};
use crate::auth::{self, Grant, Rejection, Trust};
use crate::events::{ConnectionId, Event};

/// How long a login whose request the feed does not list as active waits for
/// an immediate poll of the feed (a certificate fetched a moment ago).
const FRESH_REQUEST_WAIT: Duration = Duration::from_secs(3);
/// How long the first probe of a key the feed does not list waits for a poll
/// of the feed that started after the connection was accepted (a certificate
/// issued just before `ssh` ran). Later unknown keys are refused at once.
const PROBE_POLL_WAIT: Duration = Duration::from_secs(2);

/// The SSH handler of one connection.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) connection: ConnectionId,
    pub(super) peer: SocketAddr,
    pub(super) shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    /// Set only when a certificate was accepted, for the login of that attempt.
    pub(super) grant: Option<Arc<Grant>>,
    /// Why the bastion cut this connection, once it has.
    pub(super) cut: CutReason,
    /// One permit per `direct-tcpip` forward open or opening on this connection.
    pub(super) forwards: Arc<Semaphore>,
    /// When the connection was accepted.
    accepted: Instant,
    /// Whether a probe already waited for a fresh poll of the feed.
    waited_for_poll: bool,
    /// Why the last TPA certificate was refused, shown to the client as the
    /// instruction of a keyboard-interactive request.
    refusal: Option<String>,
}

impl Connection {
    /// The handler of a connection accepted at `accepted`, reporting its
    /// progress through `phase`.
    pub(super) fn new(
        connection: ConnectionId,
        peer: SocketAddr,
        shared: Arc<Shared>,
        phase: watch::Sender<Phase>,
        cut: CutReason,
        accepted: Instant,
    ) -> Self {
        let forwards = Arc::new(Semaphore::new(shared.limits.max_forwards_per_connection));
        Connection {
            connection,
            peer,
            shared,
            phase,
            grant: None,
            cut,
            forwards,
            accepted,
            waited_for_poll: false,
            refusal: None,
        }
    }

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

    pub(super) fn refuse_channel(&self, request: String, reason: &str) {
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
        self.open_direct_tcpip(channel, host_to_connect, port_to_connect, reply, session)
            .await;
        Ok(())
    }
}
