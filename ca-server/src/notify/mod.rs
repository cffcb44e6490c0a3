//! Notifications: events are written to the outbox in the same transaction as
//! the change they announce; one sender task per webhook delivers them in order,
//! retrying with backoff, so an outage delays delivery but loses nothing.
//! Decisions also wake the clients waiting on a request (`Waiters`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rusqlite::Transaction;
use sha2::Sha256;
use tokio::sync::{Notify, watch};
use tpa_core::api::{SlackMessage, WebhookEvent};
use tpa_core::{AccessRequest, Policy, RequestId};

use crate::config::{WebhookConfig, WebhookFormat};
use crate::store::{self, Create, StoreError, outbox};
use tpa_core::api::RequestView;
use tpa_core::audit::format_time;

pub mod replicas;
pub mod slack;

pub use slack::slack_text;

/// Queues a request event for every webhook, inside the caller's transaction.
pub fn enqueue_request_event(
    tx: &Transaction<'_>,
    kind: &str,
    request: &AccessRequest,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let event = WebhookEvent {
        event: kind.to_owned(),
        at: format_time(now),
        request: RequestView::of(request, policy, now),
    };
    let payload = serde_json::to_string(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    outbox::enqueue(tx, kind, &payload, now).map(drop)
}

/// Hex HMAC-SHA256 of `parts` concatenated, under `secret`.
fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> Option<String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(hex::encode(mac.finalize().into_bytes()))
}

/// The `X-TPA-Signature` value of a webhook body sent with
/// `X-TPA-Timestamp: <timestamp>`: `sha256=<hex HMAC-SHA256(secret,
/// "<timestamp>." + body)>`. Signing the timestamp lets receivers refuse
/// replays of old deliveries.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<String> {
    let prefix = format!("{timestamp}.");
    hmac_hex(secret, &[prefix.as_bytes(), body]).map(|h| format!("sha256={h}"))
}

/// Wakes every webhook sender (after a commit that enqueued something).
#[derive(Debug, Default, Clone)]
pub struct OutboxBell(Arc<Notify>);

impl OutboxBell {
    /// Rings the bell.
    pub fn ring(&self) {
        self.0.notify_waiters();
    }

    /// A delivery task's pause between two steps: `wait`, cut short by a
    /// ring or by a change of `shutdown`.
    pub(crate) async fn pause(&self, wait: Duration, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.0.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The HTTP client of the delivery tasks (webhooks and audit sinks): no
/// redirects, a 10 s timeout.
pub(crate) fn delivery_client() -> Result<reqwest::Client, StoreError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("tpa-ca/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StoreError::Corrupt(format!("cannot build the HTTP client: {e}")))
}

/// How long a failed delivery still waits before its retry at
/// `next_attempt_at` (stored RFC 3339); `None` when it is due.
pub(crate) fn until_retry(next_attempt_at: Option<&str>, now: DateTime<Utc>) -> Option<Duration> {
    let at = DateTime::parse_from_rfc3339(next_attempt_at?)
        .ok()?
        .with_timezone(&Utc);
    (at > now).then(|| (at - now).to_std().unwrap_or(Duration::from_secs(1)))
}

/// When to retry a delivery that failed now, after `wait`.
pub(crate) fn retry_at(wait: Duration) -> DateTime<Utc> {
    Utc::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::seconds(5))
}

/// Gives every webhook a delivery cursor (start-up, before serving).
pub fn register_sinks(
    conn: &mut rusqlite::Connection,
    webhooks: &[WebhookConfig],
) -> Result<(), StoreError> {
    for w in webhooks {
        outbox::register_sink(conn, &w.name)?;
    }
    Ok(())
}

/// Starts one sender task per webhook (registered with [`register_sinks`]);
/// they stop when `shutdown` turns true.
pub fn spawn_senders(
    database: PathBuf,
    webhooks: Vec<WebhookConfig>,
    bell: OutboxBell,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
    let client = delivery_client()?;
    Ok(webhooks
        .into_iter()
        .map(|w| {
            let sender = Sender {
                database: database.clone(),
                webhook: w,
                client: client.clone(),
                bell: bell.clone(),
            };
            tokio::spawn(sender.run(shutdown.clone()))
        })
        .collect())
}

struct Sender {
    database: PathBuf,
    webhook: WebhookConfig,
    client: reqwest::Client,
    bell: OutboxBell,
}

/// Backoff after `attempts` failures: 1 s, 2 s, 4 s … at most 5 minutes.
/// A formula over the attempt count stored with each outbox row rather than
/// a retry crate (`backoff`, `backon`): the next attempt time lives in the
/// database so that retries survive a restart and run on any replica.
pub fn backoff(attempts: i64) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 8) as u32).min(Duration::from_secs(300))
}

impl Sender {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.webhook.name.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.step().await {
                Ok(Some(wait)) => wait,
                Ok(None) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(webhook = %name, error = %e, "webhook delivery step failed");
                    Duration::from_secs(5)
                }
            };
            if wait.is_zero() {
                continue;
            }
            self.bell.pause(wait, &mut shutdown).await;
        }
    }

    /// Delivers the next item. Returns how long to wait before the next step
    /// (`None`: go on at once).
    async fn step(&self) -> Result<Option<Duration>, StoreError> {
        let database = self.database.clone();
        let sink = self.webhook.name.clone();
        let next = tokio::task::spawn_blocking(move || {
            let conn = store::open(&database, Create::Never)?;
            outbox::next(&conn, &sink)
        })
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))??;
        let Some(item) = next else {
            return Ok(Some(Duration::from_secs(30)));
        };
        if let Some(wait) = until_retry(item.next_attempt_at.as_deref(), Utc::now()) {
            return Ok(Some(wait));
        }
        // Request events only: alerts share the outbox but go to their own destinations.
        let wanted = if self.webhook.events.is_empty() {
            crate::config::EVENT_KINDS.contains(&item.kind.as_str())
        } else {
            self.webhook.events.contains(&item.kind)
        };
        let result = if wanted {
            self.post(&item).await
        } else {
            Ok(())
        };
        let database = self.database.clone();
        let sink = self.webhook.name.clone();
        let attempts = item.attempts;
        tokio::task::spawn_blocking(move || {
            let conn = store::open(&database, Create::Never)?;
            match result {
                Ok(()) => outbox::delivered(&conn, &sink, item.id),
                Err(error) => {
                    tracing::warn!(webhook = %sink, item = item.id, %error, "webhook delivery failed; will retry");
                    outbox::failed(&conn, &sink, &error, retry_at(backoff(attempts)))
                }
            }
        })
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))??;
        Ok(None)
    }

    async fn post(&self, item: &outbox::Pending) -> Result<(), String> {
        let body = match self.webhook.format {
            WebhookFormat::Generic => item.payload.clone(),
            WebhookFormat::Slack => {
                let event: WebhookEvent =
                    serde_json::from_str(&item.payload).map_err(|e| format!("bad payload: {e}"))?;
                serde_json::to_string(&SlackMessage {
                    text: slack_text(&event),
                })
                .map_err(|e| e.to_string())?
            }
        };
        let mut request = self
            .client
            .post(self.webhook.url.clone())
            .header("content-type", "application/json")
            .header("x-tpa-event", &item.kind)
            .header("x-tpa-delivery", item.id.to_string());
        if let Some(secret) = &self.webhook.secret {
            let timestamp = Utc::now().timestamp();
            if let Some(sig) = signature(secret, timestamp, body.as_bytes()) {
                request = request
                    .header("x-tpa-timestamp", timestamp.to_string())
                    .header("x-tpa-signature", sig);
            }
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", without_url(&e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }
}

/// A reqwest error without its URL (webhook URLs can carry tokens).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "error"
    };
    kind.to_owned()
}

/// Clients waiting for a decision on a request.
#[derive(Debug, Default, Clone)]
pub struct Waiters(Arc<Mutex<HashMap<RequestId, Arc<Notify>>>>);

impl Waiters {
    /// A handle to wait on; register before re-reading the request to avoid a lost wake-up.
    pub fn handle(&self, id: &RequestId) -> Arc<Notify> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            map.retain(|_, n| Arc::strong_count(n) > 1);
        }
        map.entry(id.clone()).or_default().clone()
    }

    /// Wakes everyone waiting on `id` (after the change committed).
    pub fn wake(&self, id: &RequestId) {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get(id) {
            n.notify_waiters();
        }
    }

    /// Wakes everyone waiting on any request, so each re-reads its own
    /// (after wake-ups may have been lost, e.g. another replica's while the
    /// listener was reconnecting).
    pub fn wake_all(&self) {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for n in map.values() {
            n.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let mac = hmac_hex(b"Jefe", &[b"what do ya ", b"want for nothing?"]).unwrap();
        assert_eq!(
            mac,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        // The test vector of docs/api.md ("Verifying webhook signatures").
        let sig = signature(
            b"0123456789abcdef",
            1_800_000_000,
            b"{\"event\":\"test\"}\n",
        )
        .unwrap();
        assert_eq!(sig, SIGNATURE_VECTOR);
    }

    const SIGNATURE_VECTOR: &str =
        "sha256=b678f213dc9f482dbbc5fd27b90a712032c770f344f9df463851816b2c68313a";

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(256));
        assert!(backoff(i64::MAX) <= Duration::from_secs(300));
    }
}
