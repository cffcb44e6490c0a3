//! Streaming the audit trail to monitoring: one task per `[[audit_sinks]]`
//! entry reads the events after its cursor (the append-only audit trail is
//! the sinks' outbox), delivers them in `seq` order in batches, and advances
//! the cursor only after a delivery succeeded. A failure is retried with
//! backoff (at most 30 s apart), so an outage delays delivery but loses
//! nothing.
//!
//! - Webhook: `POST` of up to [`BATCH`] events as JSON lines (the format of
//!   `tpa-ca audit export`), signed like every TPA webhook
//!   ([`crate::notify::signature`]); any 2xx answer confirms the batch.
//! - Syslog: one RFC 5424 message per event, over UDP (one per datagram) or
//!   TCP (octet counting, RFC 6587 section 3.4.1), with the chain position in
//!   the structured data element `tpa@32473` (`seq`, `hash`, `prev_hash`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpStream, UdpSocket};

use crate::config::{AuditSinkConfig, AuditSinkTarget, SyslogTransport};
use crate::notify::delivery::{Destination, Failure, Next, Queue, answered};
use crate::notify::{Deliveries, delivery_client, signature};
use crate::store::leases::Cursors;
use crate::store::sql::Sql;
use crate::store::{StoreError, audit_sinks};
use tpa_core::audit::{Event, canonical_json};

/// Events per delivery.
pub const BATCH: u32 = 100;
/// The SD-ID of TPA's structured data (32473 is the documentation
/// enterprise number of RFC 5612).
pub const SD_ID: &str = "tpa@32473";
/// The largest UDP message sent whole; a larger event goes without its JSON body.
const MAX_UDP: usize = 8192;

/// Gives every audit sink a cursor (start-up, before serving). A new sink
/// starts at the first event, so it receives the whole trail once.
pub fn register(
    conn: &impl crate::store::sql::Sql,
    sinks: &[AuditSinkConfig],
) -> Result<(), StoreError> {
    for s in sinks {
        audit_sinks::register(conn, &s.name)?;
    }
    Ok(())
}

/// Starts one delivery task per sink; they stop when `deliveries.shutdown` turns true.
pub fn spawn(
    deliveries: &Deliveries,
    sinks: Vec<AuditSinkConfig>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
    let client = delivery_client()?;
    let hostname = crate::notify::hostname();
    Ok(sinks
        .into_iter()
        .map(|sink| {
            deliveries.spawn(SinkTask {
                sink,
                client: client.clone(),
                hostname: hostname.clone(),
                tcp: None,
            })
        })
        .collect())
}

/// The audit trail as a delivery queue: up to [`BATCH`] events after the
/// sink's cursor (`audit_sink_cursors`) per delivery.
struct AuditTrail;

impl Queue for AuditTrail {
    type Item = Vec<Event>;
    const CURSORS: Cursors = Cursors::AuditSinks;

    fn next(conn: &impl Sql, sink: &str) -> Result<Option<Next<Vec<Event>>>, StoreError> {
        let cursor = audit_sinks::cursor(conn, sink)?
            .ok_or_else(|| StoreError::Corrupt(format!("audit sink {sink} has no cursor")))?;
        let events = audit_sinks::events_after(conn, cursor.delivered_through, BATCH)?;
        Ok((!events.is_empty()).then_some(Next {
            item: events,
            attempts: cursor.attempts,
            next_attempt_at: cursor.next_attempt_at,
            cursor: cursor.delivered_through,
        }))
    }

    fn delivered(
        conn: &impl Sql,
        sink: &str,
        holder: &str,
        cursor: i64,
        events: &Vec<Event>,
    ) -> Result<bool, StoreError> {
        match events.last() {
            Some(last) => audit_sinks::delivered(conn, sink, holder, cursor, last.seq),
            None => Ok(false),
        }
    }

    fn failed(
        conn: &impl Sql,
        sink: &str,
        holder: &str,
        cursor: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        audit_sinks::failed(conn, sink, holder, cursor, error, retry_at)
    }
}

struct SinkTask {
    sink: AuditSinkConfig,
    client: reqwest::Client,
    hostname: String,
    tcp: Option<TcpStream>,
}

impl Destination for SinkTask {
    type Queue = AuditTrail;
    const KIND: &'static str = crate::notify::delivery::kinds::AUDIT_SINK;
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    // Appending to the audit trail does not ring the bell: an idle sink
    // looks for new events every second.
    const IDLE_POLL: Duration = Duration::from_secs(1);

    fn name(&self) -> &str {
        &self.sink.name
    }

    fn sink(&self) -> String {
        self.sink.name.clone()
    }

    async fn send(&mut self, events: &Vec<Event>) -> Result<(), Failure> {
        self.deliver(events).await
    }
}

impl SinkTask {
    async fn deliver(&mut self, events: &[Event]) -> Result<(), Failure> {
        match self.sink.target.clone() {
            AuditSinkTarget::Webhook { url, secret } => {
                let mut body = String::new();
                for e in events {
                    body.push_str(&export_line(e).map_err(Failure::unbuildable)?);
                    body.push('\n');
                }
                let timestamp = Utc::now().timestamp();
                let sig = signature(&secret, timestamp, body.as_bytes())
                    .ok_or_else(|| "cannot sign".to_owned())?;
                let first = events.first().map_or(0, |e| e.seq);
                let last = events.last().map_or(0, |e| e.seq);
                let response = self
                    .client
                    .post(url)
                    .header("content-type", "application/x-ndjson")
                    .header("x-tpa-event", "audit.events")
                    .header("x-tpa-timestamp", timestamp.to_string())
                    .header("x-tpa-signature", sig)
                    .header("x-tpa-first-seq", first.to_string())
                    .header("x-tpa-last-seq", last.to_string())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| Failure::unsent(&e))?;
                answered(&response)
            }
            AuditSinkTarget::Syslog {
                address,
                transport,
                facility,
            } => {
                let messages = events
                    .iter()
                    .map(|e| syslog_message(e, facility, &self.hostname))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Failure::unbuildable)?;
                match transport {
                    SyslogTransport::Udp => {
                        let bind = if address.is_ipv4() {
                            "0.0.0.0:0"
                        } else {
                            "[::]:0"
                        };
                        let socket = UdpSocket::bind(bind)
                            .await
                            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
                        for m in messages {
                            let m = if m.len() > MAX_UDP {
                                without_body(&m)
                            } else {
                                m
                            };
                            socket
                                .send_to(m.as_bytes(), address)
                                .await
                                .map_err(|e| format!("cannot send to {address}: {e}"))?;
                        }
                        Ok(())
                    }
                    SyslogTransport::Tcp => {
                        let mut frames = Vec::new();
                        for m in messages {
                            frames.extend_from_slice(format!("{} ", m.len()).as_bytes());
                            frames.extend_from_slice(m.as_bytes());
                        }
                        if self.tcp.is_none() {
                            let stream = tokio::time::timeout(
                                Duration::from_secs(5),
                                TcpStream::connect(address),
                            )
                            .await
                            .map_err(|_| format!("cannot connect to {address}: timeout"))?
                            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
                            self.tcp = Some(stream);
                        }
                        let Some(stream) = self.tcp.as_mut() else {
                            return Err("no connection".to_owned().into());
                        };
                        let written = tokio::time::timeout(Duration::from_secs(10), async {
                            stream.write_all(&frames).await?;
                            stream.flush().await
                        })
                        .await;
                        match written {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(e)) => {
                                self.tcp = None;
                                Err(format!("cannot write to {address}: {e}").into())
                            }
                            Err(_) => {
                                self.tcp = None;
                                Err(format!("cannot write to {address}: timeout").into())
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One event as `tpa-ca audit export` writes it (canonical JSON with its hash).
pub fn export_line(e: &Event) -> Result<String, String> {
    canonical_json(&e.to_json(true)).map_err(|e| e.to_string())
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 section 6.3.3).
fn sd_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The RFC 5424 severity of an outcome: success is notice, denied is
/// warning, error is error.
fn severity(outcome: &str) -> u8 {
    match outcome {
        "success" => 5,
        "denied" => 4,
        _ => 3,
    }
}

/// One event as an RFC 5424 message (without transport framing): header,
/// the `tpa@32473` structured data, and the event's export line as MSG
/// (UTF-8, so it starts with a BOM).
pub fn syslog_message(e: &Event, facility: u8, hostname: &str) -> Result<String, String> {
    let pri = u16::from(facility) * 8 + u16::from(severity(&e.outcome));
    let msgid: String = e
        .action
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let msgid = if msgid.is_empty() {
        "-".to_owned()
    } else {
        msgid
    };
    Ok(format!(
        "<{pri}>1 {time} {hostname} tpa-ca {pid} {msgid} [{SD_ID} seq=\"{seq}\" hash=\"{hash}\" prev_hash=\"{prev}\" actor=\"{actor}\" object=\"{object}\" outcome=\"{outcome}\" source=\"{source}\"] \u{feff}{msg}",
        time = e.time,
        pid = std::process::id(),
        seq = e.seq,
        hash = sd_value(&e.hash),
        prev = sd_value(&e.prev_hash),
        actor = sd_value(&e.actor),
        object = sd_value(&e.object),
        outcome = sd_value(&e.outcome),
        source = sd_value(&e.source),
        msg = export_line(e)?,
    ))
}

/// A message cut before its MSG part (for UDP messages too large to send whole).
fn without_body(message: &str) -> String {
    match message.find("] \u{feff}").and_then(|i| message.get(..=i)) {
        Some(head) => format!("{head} \u{feff}{{\"truncated\":true}}"),
        None => message.chars().take(MAX_UDP).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            seq: 7,
            time: "2026-11-23T10:00:00.000000Z".into(),
            actor: "user:tpa:local#alice".into(),
            source: "127.0.0.1".into(),
            action: "request.approve".into(),
            object: "request:req_1".into(),
            outcome: "denied".into(),
            reason: "own \"request\"".into(),
            details: "{}".into(),
            prev_hash: "a".repeat(64),
            hash: "b".repeat(64),
        }
    }

    #[test]
    fn syslog_message_is_rfc5424() {
        let mut e = event();
        e.actor = "x]\"\\y".into();
        let m = syslog_message(&e, 10, "ca1").unwrap();
        // authpriv (10) * 8 + warning (4) = 84.
        let prefix = format!(
            "<84>1 2026-11-23T10:00:00.000000Z ca1 tpa-ca {} request.approve [tpa@32473 seq=\"7\" hash=\"{}\" prev_hash=\"{}\" actor=\"x\\]\\\"\\\\y\" ",
            std::process::id(),
            "b".repeat(64),
            "a".repeat(64)
        );
        assert!(m.starts_with(&prefix), "{m}");
        let body = m.split_once("] \u{feff}").unwrap().1;
        let back = Event::from_export_line(body).unwrap();
        assert_eq!(back, e);
        let cut = without_body(&m);
        assert!(
            cut.ends_with("\u{feff}{\"truncated\":true}") && cut.contains("seq=\"7\""),
            "{cut}"
        );
    }
}
