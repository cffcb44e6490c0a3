//! Notifications: events are written to the outbox in the same transaction as
//! the change they announce; one sender task per webhook delivers them in order
//! ([`delivery`], shared with the other senders), retrying with backoff, so an
//! outage delays delivery but loses nothing.
//! Decisions also wake the clients waiting on a request (`Waiters`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tpa_core::api::WebhookEvent;
use tpa_core::{AccessRequest, Policy, RequestId};

use crate::config::WebhookConfig;
use crate::store::{StoreError, outbox};
use tpa_core::api::RequestView;
use tpa_core::audit::format_time;

mod bell;
pub mod delivery;
mod failure;
mod lease;
pub mod replicas;
mod session;
pub mod slack;
mod webhook;

pub use bell::{BellListener, OutboxBell};
pub use delivery::{Deliveries, backoff};
pub(crate) use lease::hostname;
pub use slack::slack_text;

/// Queues a request event for every webhook, inside the caller's transaction.
pub fn enqueue_request_event(
    tx: &impl crate::store::sql::Sql,
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

/// Gives every webhook a delivery cursor (start-up, before serving).
pub fn register_sinks(
    conn: &impl crate::store::sql::Sql,
    webhooks: &[WebhookConfig],
) -> Result<(), StoreError> {
    for w in webhooks {
        outbox::register_sink(conn, &w.name)?;
    }
    Ok(())
}

/// Starts one sender task per webhook (registered with [`register_sinks`]);
/// they stop when `deliveries.shutdown` turns true.
pub fn spawn_senders(
    deliveries: &Deliveries,
    webhooks: Vec<WebhookConfig>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, StoreError> {
    let client = delivery_client()?;
    Ok(webhooks
        .into_iter()
        .map(|webhook| {
            deliveries.spawn(webhook::Webhook {
                webhook,
                client: client.clone(),
            })
        })
        .collect())
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
}
