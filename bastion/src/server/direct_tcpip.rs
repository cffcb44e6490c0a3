//! `direct-tcpip` (`ssh -J`, `ssh -W`): a forward to a host the certificate
//! approves and the inventory lists, pumped in its own task, with a session
//! record for the CA when it starts (in case the bastion dies) and when it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelOpenFailure, Disconnect};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tpa_core::api::SessionRecord;

use super::handler::Connection;
use super::{CutReason, Shared};
use crate::auth::Grant;
use crate::config::HostAddress;
use crate::events::{ConnectionEnd, ConnectionId, Event, ForwardEnd};
use crate::forward::{self, ByteCounts, ForwardRefusal};
use tpa_core::HostName;

/// Bound on connecting to a host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The error of the record of a forward the bastion did not see end.
const CRASH_ERROR: &str =
    "the bastion stopped before this session ended; its end time and byte counts are unknown";

impl Connection {
    /// Opens a forward to `host:port` when this connection's grant allows
    /// it and a forward slot is free; every refusal is reported.
    pub(super) async fn open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) {
        let request = format!("direct-tcpip {}:{port}", host.escape_debug());
        let Some(grant) = self.grant.clone() else {
            self.refuse_channel(request, "not authenticated");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return;
        };
        let (name, address) = match forward::authorize(&grant, &self.shared.inventory, host, port) {
            Ok(target) => target,
            Err(refusal) => {
                self.refuse_forward(request, &refusal, session);
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return;
            }
        };
        let Ok(permit) = self.forwards.clone().try_acquire_owned() else {
            let limit = self.shared.limits.max_forwards_per_connection;
            self.refuse_channel(
                request,
                &format!("too many forwards on this connection (limit {limit})"),
            );
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return;
        };
        // Connect and pump in a task: the session keeps serving other channels.
        let forward = Forward {
            shared: self.shared.clone(),
            connection: self.connection,
            peer: self.peer,
            cut: self.cut.clone(),
            grant,
            request,
            name,
            address,
            _permit: permit,
        };
        tokio::spawn(forward.run(channel, reply));
    }

    /// Reports a forward the grant or the inventory does not allow.
    fn refuse_forward(&self, request: String, refusal: &ForwardRefusal, session: &mut Session) {
        self.refuse_channel(request, &refusal.to_string());
        // Issue 12: the reason in words. When no other forward is
        // open on this connection (`ssh -J`, `ssh -W`), a disconnect
        // message carries it (OpenSSH prints "Received disconnect
        // from …: <reason>"); it goes out before the channel failure,
        // after which `ssh -W` exits. Otherwise only this channel is
        // refused: a sibling forward is never cut.
        let only =
            self.forwards.available_permits() == self.shared.limits.max_forwards_per_connection;
        if only {
            let text = format!(
                "tpa-bastion: {refusal}. What to do: {}.",
                forward::advice(refusal)
            );
            let _ = self.cut.set(ConnectionEnd::Refused(text.clone()));
            let _ = session.disconnect(Disconnect::ByApplication, &text, "");
        }
    }
}

/// One allowed forward, from connecting to its session record.
struct Forward {
    shared: Arc<Shared>,
    connection: ConnectionId,
    peer: SocketAddr,
    cut: CutReason,
    grant: Arc<Grant>,
    request: String,
    name: HostName,
    address: HostAddress,
    /// The connection's forward slot, given back when the forward ends.
    _permit: OwnedSemaphorePermit,
}

impl Forward {
    async fn run(self, channel: Channel<Msg>, reply: ChannelOpenHandle) {
        let stream = match self.connect().await {
            Ok(stream) => stream,
            Err(reason) => {
                self.shared.emit(Event::ChannelRefused {
                    connection: self.connection,
                    peer: Some(self.peer),
                    login: Some(self.grant.login.clone()),
                    grant_request: Some(self.grant.request.to_string()),
                    request: self.request,
                    reason,
                });
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        reply.accept().await;
        self.pump(channel, stream).await;
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        let (name, address) = (&self.name, &self.address);
        let connect = TcpStream::connect((address.host.as_str(), address.port));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(format!("cannot connect to {name} at {address}: {e}")),
            Err(_) => Err(format!("connecting to {name} at {address} timed out")),
        }
    }

    /// Copies bytes until either side closes. The CA is sent a record at the
    /// start (what it keeps if the bastion dies before the forward ends) and
    /// the real one at the end.
    async fn pump(self, channel: Channel<Msg>, stream: TcpStream) {
        let started_at = chrono::Utc::now();
        let session_id = format!("ses_{:032x}", rand::random::<u128>());
        self.shared.emit(Event::ForwardStarted {
            connection: self.connection,
            host: self.name.to_string(),
            address: self.address.to_string(),
        });
        let target_address = self.address.to_string();
        let record = |counts, forward_end: &ForwardEnd, cut| {
            session_record(SessionFacts {
                session_id: &session_id,
                grant: &self.grant,
                peer: self.peer,
                target: self.name.as_str(),
                target_address: &target_address,
                started_at,
                counts,
                forward_end,
                cut,
            })
        };
        let crashed = record(
            ByteCounts::default(),
            &ForwardEnd::Error(CRASH_ERROR.to_owned()),
            None,
        );
        let crashed = SessionRecord {
            ended_at: crashed.started_at.clone(),
            ..crashed
        };
        self.shared.emit(Event::SessionStarted(Box::new(crashed)));
        let (counts, end) = forward::pump(channel, stream).await;
        let record = record(counts, &end, self.cut.get());
        self.shared.emit(Event::ForwardEnded {
            connection: self.connection,
            host: self.name.to_string(),
            bytes_to_host: counts.to_host,
            bytes_from_host: counts.from_host,
            end,
        });
        self.shared.emit(Event::SessionRecord(Box::new(record)));
    }
}

/// What a session record is made of.
struct SessionFacts<'a> {
    session_id: &'a str,
    grant: &'a Grant,
    peer: SocketAddr,
    target: &'a str,
    target_address: &'a str,
    started_at: chrono::DateTime<chrono::Utc>,
    counts: ByteCounts,
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
