//! Delivering queued alerts: one task per `[[alert_destinations]]` entry
//! reads the outbox after its cursor (`alert:<name>`), skips what is not an
//! alert for it, and POSTs the rest in the destination's own format,
//! retrying with backoff (and at least a `429`'s `Retry-After`) until a 2xx.
//!
//! - PagerDuty Events API v2: `trigger` with `routing_key` and `dedup_key`.
//! - Opsgenie Alert API: `Authorization: GenieKey …`, `alias` as the dedup key.
//! - Slack incoming webhook: `text` and one mrkdwn section block.
//! - Generic webhook: the `AlertEvent` JSON, signed like every TPA webhook.

use chrono::Utc;
use serde_json::{Value, json};
use tpa_core::api::AlertEvent;

use super::{KIND, sink_name};
use crate::config::{AlertDestination, DestinationKind};
use crate::notify::delivery::{Deliveries, Destination, Failure, Outbox, answered};
use crate::notify::slack::mrkdwn;
use crate::notify::{delivery_client, signature};
use crate::store::{StoreError, outbox};

pub(super) fn spawn(
    deliveries: &Deliveries,
    destinations: Vec<AlertDestination>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
    let client = delivery_client()?;
    Ok(destinations
        .into_iter()
        .map(|destination| {
            deliveries.spawn(Sender {
                destination,
                client: client.clone(),
            })
        })
        .collect())
}

struct Sender {
    destination: AlertDestination,
    client: reqwest::Client,
}

impl Destination for Sender {
    type Queue = Outbox;
    const KIND: &'static str = crate::notify::delivery::kinds::ALERT_DESTINATION;

    fn name(&self) -> &str {
        &self.destination.name
    }

    fn sink(&self) -> String {
        sink_name(&self.destination)
    }

    async fn send(&mut self, item: &outbox::Pending) -> Result<(), Failure> {
        match self.ours(item) {
            Some(alert) => self.post(&alert, &item.id.to_string()).await,
            None => Ok(()),
        }
    }
}

impl Sender {
    /// The alert in `item` when it is one for this destination.
    fn ours(&self, item: &outbox::Pending) -> Option<AlertEvent> {
        if item.kind != KIND {
            return None;
        }
        let payload: Value = match serde_json::from_str(&item.payload) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(destination = %self.destination.name, item = item.id, error = %e, "queued alert is not JSON; passed over");
                return None;
            }
        };
        let for_us = payload
            .get("destinations")?
            .as_array()?
            .iter()
            .any(|d| d.as_str() == Some(self.destination.name.as_str()));
        if !for_us {
            return None;
        }
        let alert = payload.get("alert").cloned().unwrap_or(Value::Null);
        match serde_json::from_value(alert) {
            Ok(alert) => Some(alert),
            Err(e) => {
                tracing::error!(destination = %self.destination.name, item = item.id, error = %e, "queued alert cannot be read; passed over");
                None
            }
        }
    }

    async fn post(&self, alert: &AlertEvent, delivery: &str) -> Result<(), Failure> {
        let response = request(&self.client, &self.destination, alert, delivery)
            .send()
            .await
            .map_err(|e| Failure::unsent(&e))?;
        answered(&response)
    }
}

/// The POST of `alert` to `destination` in its format, with its headers
/// (Opsgenie's key, a webhook's event, delivery id and signature). The
/// delivery id is the outbox id of a queued alert, `test-<run>` for a test.
pub(crate) fn request(
    client: &reqwest::Client,
    destination: &AlertDestination,
    alert: &AlertEvent,
    delivery: &str,
) -> reqwest::RequestBuilder {
    let body = body(&destination.kind, alert).to_string();
    let mut request = client
        .post(destination.url.clone())
        .header("content-type", "application/json");
    match &destination.kind {
        DestinationKind::Opsgenie { api_key } => {
            request = request.header("authorization", format!("GenieKey {api_key}"));
        }
        DestinationKind::Webhook { secret } => {
            request = request
                .header("x-tpa-event", KIND)
                .header("x-tpa-delivery", delivery);
            let timestamp = Utc::now().timestamp();
            if let Some(sig) = secret
                .as_ref()
                .and_then(|s| signature(s, timestamp, body.as_bytes()))
            {
                request = request
                    .header("x-tpa-timestamp", timestamp.to_string())
                    .header("x-tpa-signature", sig);
            }
        }
        DestinationKind::PagerDuty { .. } | DestinationKind::Slack => {}
    }
    request.body(body)
}

/// At most `max` characters of `text`, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The body `kind` expects for `alert`.
pub fn body(kind: &DestinationKind, alert: &AlertEvent) -> Value {
    let details = json!({
        "rule": alert.rule,
        "kind": alert.kind,
        "subject": alert.subject,
        "count": alert.count,
        "audit_seqs": alert.audit_seqs,
        "actor": alert.actor,
        "action": alert.action,
        "object": alert.object,
        "source": alert.source,
        "reason": alert.reason,
    });
    match kind {
        // Events API v2: summary ≤ 1024 characters, dedup_key ≤ 255.
        DestinationKind::PagerDuty { routing_key } => json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": alert.dedup_key,
            "payload": {
                "summary": cut(&alert.summary, 1024),
                "source": "tpa-ca",
                "severity": alert.severity,
                "timestamp": alert.at,
                "component": "tpa-ca",
                "group": alert.rule,
                "class": alert.kind,
                "custom_details": details,
            },
        }),
        // Alert API: message ≤ 130 characters, alias ≤ 512, details are strings.
        DestinationKind::Opsgenie { .. } => {
            let priority = match alert.severity.as_str() {
                "critical" => "P1",
                "error" => "P2",
                "warning" => "P3",
                _ => "P5",
            };
            let strings: serde_json::Map<String, Value> = details
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), Value::String(text))
                })
                .collect();
            json!({
                "message": cut(&alert.summary, 130),
                "alias": alert.dedup_key,
                "description": cut(&format!("{}\nreason: {}", alert.summary, alert.reason), 15_000),
                "priority": priority,
                "source": "tpa-ca",
                "entity": cut(&alert.subject, 512),
                "tags": ["tpa", alert.kind, alert.severity],
                "details": strings,
            })
        }
        DestinationKind::Slack => {
            let text = format!(
                ":rotating_light: *TPA alert {}* ({}) — {} — subject {} — {} event(s), first at {}",
                mrkdwn(&alert.rule, 64),
                mrkdwn(&alert.severity, 16),
                mrkdwn(&alert.summary, 300),
                mrkdwn(&alert.subject, 120),
                alert.count,
                mrkdwn(&alert.at, 40),
            );
            json!({
                "text": text,
                "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": text } }],
            })
        }
        DestinationKind::Webhook { .. } => {
            serde_json::to_value(alert).unwrap_or_else(|_| json!({ "event": KIND }))
        }
    }
}
