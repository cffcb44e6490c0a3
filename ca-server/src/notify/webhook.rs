//! A `[[webhooks]]` entry as a [`Destination`]: the request events it wants,
//! as TPA's JSON (signed when the webhook has a secret) or as a Slack message.

use chrono::Utc;
use tpa_core::api::{SlackMessage, WebhookEvent};

use super::delivery::{Destination, Failure, Outbox, answered};
use super::{signature, slack_text};
use crate::config::{WebhookConfig, WebhookFormat};
use crate::store::outbox::Pending;

pub(super) struct Webhook {
    pub webhook: WebhookConfig,
    pub client: reqwest::Client,
}

impl Webhook {
    /// Request events only: alerts share the outbox but go to their own destinations.
    fn wants(&self, kind: &str) -> bool {
        if self.webhook.events.is_empty() {
            crate::config::EVENT_KINDS.contains(&kind)
        } else {
            self.webhook.events.iter().any(|k| k == kind)
        }
    }

    fn body(&self, item: &Pending) -> Result<String, String> {
        match self.webhook.format {
            WebhookFormat::Generic => Ok(item.payload.clone()),
            WebhookFormat::Slack => {
                let event: WebhookEvent =
                    serde_json::from_str(&item.payload).map_err(|e| format!("bad payload: {e}"))?;
                serde_json::to_string(&SlackMessage {
                    text: slack_text(&event),
                })
                .map_err(|e| e.to_string())
            }
        }
    }
}

impl Destination for Webhook {
    type Queue = Outbox;
    const KIND: &'static str = super::delivery::kinds::WEBHOOK;

    fn name(&self) -> &str {
        &self.webhook.name
    }

    fn sink(&self) -> String {
        self.webhook.name.clone()
    }

    async fn send(&mut self, item: &Pending) -> Result<(), Failure> {
        if !self.wants(&item.kind) {
            return Ok(());
        }
        // A payload that does not parse never will: skipped, audited.
        let body = self.body(item).map_err(Failure::unbuildable)?;
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
            .map_err(|e| Failure::unsent(&e))?;
        answered(&response)
    }
}
