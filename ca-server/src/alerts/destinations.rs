//! Delivering queued alerts: one task per `[[alert_destinations]]` entry
//! reads the outbox after its cursor (`alert:<name>`), skips what is not an
//! alert for it, and POSTs the rest in the destination's own format,
//! retrying with backoff (and at least a `429`'s `Retry-After`) until a 2xx.
//!
//! - PagerDuty Events API v2: `trigger` with `routing_key` and `dedup_key`.
//! - Opsgenie Alert API: `Authorization: GenieKey …`, `alias` as the dedup key.
//! - Slack incoming webhook: `text` and one mrkdwn section block.
//! - Generic webhook: the `AlertEvent` JSON, signed like every TPA webhook.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::watch;
use tpa_core::api::AlertEvent;

use super::{KIND, sink_name};
use crate::config::{AlertDestination, DestinationKind};
use crate::notify::slack::mrkdwn;
use crate::notify::{
    OutboxBell, backoff, delivery_client, retry_at, signature, until_retry, without_url,
};
use crate::store::{self, Create, StoreError, outbox};

/// How often an idle destination looks for new alerts.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

pub(super) fn spawn(
    database: &Path,
    destinations: Vec<AlertDestination>,
    bell: &OutboxBell,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
    let client = delivery_client()?;
    Ok(destinations
        .into_iter()
        .map(|destination| {
            let sender = Sender {
                database: database.to_owned(),
                sink: sink_name(&destination),
                destination,
                client: client.clone(),
                bell: bell.clone(),
            };
            tokio::spawn(sender.run(shutdown.clone()))
        })
        .collect())
}

/// A failed delivery: why, and how long the destination asked us to wait.
struct Failure {
    error: String,
    retry_after: Option<Duration>,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

struct Sender {
    database: PathBuf,
    sink: String,
    destination: AlertDestination,
    client: reqwest::Client,
    bell: OutboxBell,
}

impl Sender {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.step().await {
                Ok(None) => continue,
                Ok(Some(wait)) => wait,
                Err(e) => {
                    tracing::warn!(destination = %self.destination.name, error = %e, "alert delivery step failed");
                    Duration::from_secs(5)
                }
            };
            self.bell.pause(wait, &mut shutdown).await;
        }
    }

    /// Delivers (or skips) the next item; returns how long to wait before
    /// the next step (`None`: go on at once).
    async fn step(&self) -> Result<Option<Duration>, StoreError> {
        let (database, sink) = (self.database.clone(), self.sink.clone());
        let next = tokio::task::spawn_blocking(move || {
            let conn = store::open(&database, Create::Never)?;
            outbox::next(&conn, &sink)
        })
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))??;
        let Some(item) = next else {
            // A short idle poll: a ring of the bell that comes between this
            // read and the pause is not kept (`Notify::notify_waiters`), and
            // an alert must not wait for the next ring.
            return Ok(Some(IDLE_POLL));
        };
        if let Some(wait) = until_retry(item.next_attempt_at.as_deref(), Utc::now()) {
            return Ok(Some(wait));
        }
        let result = match self.ours(&item) {
            Some(alert) => self.post(&alert, item.id).await,
            None => Ok(()),
        };
        let (database, sink) = (self.database.clone(), self.sink.clone());
        let attempts = item.attempts;
        let name = self.destination.name.clone();
        tokio::task::spawn_blocking(move || {
            let conn = store::open(&database, Create::Never)?;
            match result {
                Ok(()) => outbox::delivered(&conn, &sink, item.id),
                Err(Failure { error, retry_after }) => {
                    tracing::warn!(destination = %name, item = item.id, %error, "alert delivery failed; will retry");
                    let wait = backoff(attempts).max(retry_after.unwrap_or_default());
                    outbox::failed(&conn, &sink, &error, retry_at(wait))
                }
            }
        })
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))??;
        Ok(None)
    }

    /// The alert in `item` when it is one for this destination.
    fn ours(&self, item: &outbox::Pending) -> Option<AlertEvent> {
        if item.kind != KIND {
            return None;
        }
        let payload: Value = serde_json::from_str(&item.payload).ok()?;
        let for_us = payload
            .get("destinations")?
            .as_array()?
            .iter()
            .any(|d| d.as_str() == Some(self.destination.name.as_str()));
        if !for_us {
            return None;
        }
        serde_json::from_value(payload.get("alert")?.clone()).ok()
    }

    async fn post(&self, alert: &AlertEvent, delivery: i64) -> Result<(), Failure> {
        let response = request(&self.client, &self.destination, alert, delivery)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", without_url(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        Err(Failure {
            error: format!("HTTP {status}"),
            retry_after,
        })
    }
}

/// The POST of `alert` to `destination` in its format, with its headers
/// (Opsgenie's key, a webhook's event, delivery id and signature).
pub(crate) fn request(
    client: &reqwest::Client,
    destination: &AlertDestination,
    alert: &AlertEvent,
    delivery: i64,
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
                .header("x-tpa-delivery", delivery.to_string());
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
