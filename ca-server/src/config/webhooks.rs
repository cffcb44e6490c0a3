//! `[[webhooks]]`: where notifications go, in which format, signed with which secret.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `tpa_core::api::WebhookEvent` as JSON.
    Generic,
    /// A Slack-compatible incoming-webhook body (`{"text": …}`).
    Slack,
}

/// One webhook sink.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Unique name (its delivery cursor is kept under this name).
    pub name: String,
    /// Where to POST.
    pub url: reqwest::Url,
    /// Body format.
    pub format: WebhookFormat,
    /// HMAC-SHA256 key for the `X-TPA-Signature` header.
    pub secret: Option<Vec<u8>>,
    /// Only these event kinds (all when empty).
    pub events: BTreeSet<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a token (Slack puts it in the path): show the host only.
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("host", &self.url.host_str())
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

/// The event kinds TPA sends.
pub const EVENT_KINDS: [&str; 7] = [
    "request.created",
    "request.approved",
    "request.denied",
    "request.expired",
    "request.cancelled",
    "request.revoked",
    "request.break_glass",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    name: String,
    url: String,
    #[serde(default)]
    format: Option<String>,
    secret_file: Option<std::path::PathBuf>,
    #[serde(default)]
    events: Vec<String>,
}

pub(super) fn webhooks(raw: &[RawWebhook], base: &Path) -> Result<Vec<WebhookConfig>, String> {
    let mut names = BTreeSet::new();
    raw.iter()
        .map(|w| {
            let ctx = |e: String| format!("webhook {:?}: {e}", w.name);
            if w.name.is_empty()
                || w.name.len() > 64
                || !w
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(ctx(
                    "name must be 1 to 64 letters, digits, '-', '_' or '.'".to_owned()
                ));
            }
            if !names.insert(w.name.clone()) {
                return Err(ctx("defined twice".to_owned()));
            }
            let url = delivery_url(&w.url).map_err(ctx)?;
            let format = match w.format.as_deref().unwrap_or("generic") {
                "generic" => WebhookFormat::Generic,
                "slack" => WebhookFormat::Slack,
                other => {
                    return Err(ctx(format!(
                        "format {other:?} is not \"generic\" or \"slack\""
                    )));
                }
            };
            let secret = w
                .secret_file
                .as_deref()
                .map(|p| signing_secret("secret_file", p, base))
                .transpose()
                .map_err(ctx)?;
            let mut events = BTreeSet::new();
            for e in &w.events {
                if !EVENT_KINDS.contains(&e.as_str()) {
                    return Err(ctx(format!(
                        "unknown event {e:?}; known: {}",
                        EVENT_KINDS.join(", ")
                    )));
                }
                events.insert(e.clone());
            }
            Ok(WebhookConfig {
                name: w.name.clone(),
                url,
                format,
                secret,
                events,
            })
        })
        .collect()
}

/// A URL TPA posts to: `https://`, or plain `http://` only to the loopback
/// interface (tests, a local relay).
pub(super) fn delivery_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("url: {e}"))?;
    let loopback = url
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err("url must be https:// (plain http only to 127.0.0.1 or localhost)".to_owned());
    }
    Ok(url)
}

/// An HMAC key read from a private file (regular, ours, mode 0600) of at
/// least 16 bytes; `key` names the setting in errors.
pub(super) fn signing_secret(key: &str, p: &Path, base: &Path) -> Result<Vec<u8>, String> {
    let path = if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    };
    let text = super::oidc::read_private_file(&path)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    let secret = text.into_bytes();
    if secret.len() < 16 {
        return Err(format!("{key} must hold at least 16 bytes"));
    }
    Ok(secret)
}
