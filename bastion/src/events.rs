//! What happens on the bastion, as values: every rejection, every accepted
//! certificate, every forward with its byte counts, every end of connection.
//!
//! The server logs each event with `tracing` and hands it to an [`EventSink`].
//! The session recorder ([`crate::recorder`]) is a sink that spools and
//! delivers [`Event::SessionRecord`]s to the CA, the refusal reporter
//! ([`crate::refusals`]) one that reports rejections and refused channels to
//! it; tests use one to check why something was refused.

use std::net::SocketAddr;

use tpa_core::api::SessionRecord;

/// Identifies one TCP connection to the bastion, for the lifetime of the process.
pub type ConnectionId = u64;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An authentication attempt was refused.
    AuthRejected {
        /// The connection.
        connection: ConnectionId,
        /// The client address.
        peer: Option<SocketAddr>,
        /// The SSH username of the attempt.
        login: String,
        /// Why (one line, no key material).
        reason: String,
    },
    /// A certificate was accepted.
    Authenticated {
        /// The connection.
        connection: ConnectionId,
        /// The client address.
        peer: Option<SocketAddr>,
        /// The SSH username, one of the certificate's principals.
        login: String,
        /// The certificate serial.
        serial: u64,
        /// The certificate key id.
        key_id: String,
        /// The request the certificate was issued for.
        request: String,
        /// Unix seconds at which the connection is cut.
        valid_before: u64,
    },
    /// A channel or forwarding request was refused.
    ChannelRefused {
        /// The connection.
        connection: ConnectionId,
        /// The client address.
        peer: Option<SocketAddr>,
        /// The SSH username, once a certificate was accepted.
        login: Option<String>,
        /// The request of the accepted certificate, once there is one.
        grant_request: Option<String>,
        /// What was asked (`session`, `direct-tcpip web-1:22`, `tcpip-forward`, …).
        request: String,
        /// Why.
        reason: String,
    },
    /// A direct-tcpip forward to an approved host started.
    ForwardStarted {
        /// The connection.
        connection: ConnectionId,
        /// The host name from the certificate.
        host: String,
        /// The inventory address connected to.
        address: String,
    },
    /// A forward ended.
    ForwardEnded {
        /// The connection.
        connection: ConnectionId,
        /// The host name.
        host: String,
        /// Bytes from the client to the host.
        bytes_to_host: u64,
        /// Bytes from the host to the client.
        bytes_from_host: u64,
        /// Which side ended it.
        end: ForwardEnd,
    },
    /// A forward began: the record the CA gets if the bastion dies before it
    /// ends (`end: "error"`), kept aside until its [`Event::SessionRecord`].
    SessionStarted(Box<SessionRecord>),
    /// The record of one forwarded session, after it ended (what the CA gets).
    SessionRecord(Box<SessionRecord>),
    /// A connection ended.
    ConnectionEnded {
        /// The connection.
        connection: ConnectionId,
        /// How.
        end: ConnectionEnd,
    },
}

/// How a forward ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardEnd {
    /// The client sent EOF or closed the channel (or its connection went away).
    ClientClosed,
    /// The host closed its TCP connection.
    HostClosed,
    /// An I/O error on either side.
    Error(String),
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The client disconnected (or the connection failed).
    ClientClosed,
    /// No successful authentication within `auth_timeout`.
    AuthTimeout,
    /// No finished key exchange within `handshake_timeout`.
    HandshakeTimeout,
    /// Still unauthenticated when a newer connection needed its slot.
    Evicted,
    /// Authenticated while every authenticated slot was taken.
    Full,
    /// The certificate reached its `valid_before`.
    CertificateExpired,
    /// The request's approved window ended (before the certificate expired).
    WindowEnded,
    /// The CA's revocation feed reported the certificate's request or serial revoked.
    AccessRevoked,
    /// The bastion is shutting down.
    Shutdown,
    /// The bastion refused the connection's only forward and said why in its
    /// disconnect message (the text).
    Refused(String),
    /// The SSH session failed.
    Error(String),
}

/// Receives every event. Implementations must not block.
pub trait EventSink: Send + Sync + std::fmt::Debug + 'static {
    /// Takes one event.
    fn record(&self, event: &Event);
}

/// Hands every event to each of several sinks.
#[derive(Debug, Default)]
pub struct Fanout(pub Vec<std::sync::Arc<dyn EventSink>>);

impl EventSink for Fanout {
    fn record(&self, event: &Event) {
        for sink in &self.0 {
            sink.record(event);
        }
    }
}

/// Discards events (they are still logged by the server).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSink;

impl EventSink for NoSink {
    fn record(&self, _event: &Event) {}
}

/// Logs `event` with `tracing`: refusals at `warn`, the rest at `info`.
pub fn log(event: &Event) {
    match event {
        Event::AuthRejected {
            connection,
            peer,
            login,
            reason,
        } => tracing::warn!(connection, ?peer, login, reason, "authentication rejected"),
        Event::Authenticated {
            connection,
            peer,
            login,
            serial,
            key_id,
            request,
            valid_before,
        } => tracing::info!(
            connection,
            ?peer,
            login,
            serial,
            key_id,
            request,
            valid_before,
            "certificate accepted"
        ),
        Event::ChannelRefused {
            connection,
            peer,
            login,
            grant_request,
            request,
            reason,
        } => tracing::warn!(
            connection,
            ?peer,
            login,
            grant_request,
            request,
            reason,
            "channel refused"
        ),
        Event::ForwardStarted {
            connection,
            host,
            address,
        } => tracing::info!(connection, host, address, "forward started"),
        Event::ForwardEnded {
            connection,
            host,
            bytes_to_host,
            bytes_from_host,
            end,
        } => tracing::info!(
            connection,
            host,
            bytes_to_host,
            bytes_from_host,
            ?end,
            "forward ended"
        ),
        // Logged as "forward started" already.
        Event::SessionStarted(_) => {}
        Event::SessionRecord(r) => tracing::info!(
            session = r.session_id,
            request = r.request,
            login = r.login,
            source = r.source,
            target = r.target,
            bytes_to_target = r.bytes_to_target,
            bytes_from_target = r.bytes_from_target,
            end = r.end,
            "session record"
        ),
        Event::ConnectionEnded { connection, end } => {
            tracing::info!(connection, ?end, "connection ended")
        }
    }
}

impl ConnectionEnd {
    /// The one-line reason sent to the client with the disconnect, for the
    /// ends the bastion decides.
    pub fn disconnect_message(&self) -> &str {
        match self {
            ConnectionEnd::Refused(text) => text,
            ConnectionEnd::AuthTimeout => "authentication timed out",
            ConnectionEnd::HandshakeTimeout => "key exchange timed out",
            ConnectionEnd::Evicted => "too many connections are authenticating at once; try again",
            ConnectionEnd::Full => {
                "the bastion is serving as many sessions as it allows; try again in a minute"
            }
            ConnectionEnd::CertificateExpired => "certificate expired",
            ConnectionEnd::WindowEnded => "approved access window ended",
            ConnectionEnd::AccessRevoked => "access revoked",
            ConnectionEnd::Shutdown => "bastion shutting down",
            ConnectionEnd::ClientClosed | ConnectionEnd::Error(_) => "connection closed",
        }
    }

    /// The `end` of a session record cut by this connection end.
    pub fn session_end(&self) -> &'static str {
        match self {
            ConnectionEnd::ClientClosed => "client_closed",
            ConnectionEnd::CertificateExpired => "certificate_expired",
            ConnectionEnd::WindowEnded => "window_ended",
            ConnectionEnd::AccessRevoked => "access_revoked",
            ConnectionEnd::Shutdown => "bastion_shutdown",
            ConnectionEnd::AuthTimeout
            | ConnectionEnd::HandshakeTimeout
            | ConnectionEnd::Evicted
            | ConnectionEnd::Full
            | ConnectionEnd::Refused(_)
            | ConnectionEnd::Error(_) => "error",
        }
    }
}
