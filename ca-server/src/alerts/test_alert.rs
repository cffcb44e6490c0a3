//! The test alert of `tpa-ca integrations test --send-test-alert`: one alert,
//! labelled as a test in every field a person sees, with a dedup key of its
//! own run (so it never merges into a real incident), POSTed straight to a
//! destination in its format, with the headers real alerts carry
//! ([`super::destinations::request`]); not through the outbox, and not
//! retried.

use chrono::{DateTime, Utc};
use tpa_core::api::AlertEvent;
use tpa_core::audit::format_time;

use super::KIND;
use crate::config::AlertDestination;
use crate::notify::without_url;

/// The rule name and kind every test alert carries.
pub const TEST_RULE: &str = "integrations-test";

/// Characters of a destination's answer printed.
const ANSWER_CHARS: usize = 200;

/// The test alert of run `run` (a fresh random id): severity `info`.
pub fn test_alert(run: &str, now: DateTime<Utc>) -> AlertEvent {
    let by = "tpa-ca integrations test --send-test-alert";
    AlertEvent {
        event: KIND.to_owned(),
        rule: TEST_RULE.to_owned(),
        kind: "test".to_owned(),
        severity: "info".to_owned(),
        summary: format!(
            "TPA TEST ALERT from `{by}`: a test of this destination, not an incident; no action needed"
        ),
        subject: "test".to_owned(),
        dedup_key: format!("tpa:{TEST_RULE}:{run}"),
        at: format_time(now),
        count: 1,
        audit_seqs: Vec::new(),
        actor: by.to_owned(),
        action: "integrations.test".to_owned(),
        object: String::new(),
        source: String::new(),
        reason: "test alert".to_owned(),
    }
}

/// What a destination answered: `HTTP <status>: <its body, cut>` (without
/// `: …` when the body is empty); an error
/// for anything but 2xx (with a 429's `Retry-After`) or no answer.
pub async fn send(
    client: &reqwest::Client,
    destination: &AlertDestination,
    alert: &AlertEvent,
) -> Result<String, String> {
    // A delivery id of the run (the end of the dedup key), never one a
    // queued alert has: a receiver that deduplicates on it neither drops
    // the next run's test nor takes a test for alert 0.
    let run = alert.dedup_key.rsplit(':').next().unwrap_or_default();
    let delivery = format!("test-{run}");
    let response = super::destinations::request(client, destination, alert, &delivery)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", without_url(&e)))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            format!(
                "; retry after {} s",
                tpa_core::text::printable(v.trim(), false, 16)
            )
        })
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&first_bytes(response).await).into_owned();
    let text = tpa_core::text::printable(text.trim(), false, ANSWER_CHARS);
    let answer = if text.is_empty() {
        format!("HTTP {}{retry_after}", status.as_u16())
    } else {
        format!("HTTP {}{retry_after}: {text}", status.as_u16())
    };
    if status.is_success() {
        Ok(answer)
    } else {
        Err(answer)
    }
}

/// At most the first 4 KiB of an answer's body (what is printed is shorter).
async fn first_bytes(mut response: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < 4096 {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    out.truncate(4096);
    out
}
