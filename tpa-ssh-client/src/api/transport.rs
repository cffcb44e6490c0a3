//! The HTTP under [`super::Client`]: one CA URL checked as reqwest parses it,
//! JSON in and out with every string made printable, and failures turned into
//! errors a person understands ([`Unreachable`], [`ApiFailure`]).

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tpa_core::api::ErrorBody;
use tpa_core::text::printable;

/// HTTP to one CA, with the login's token when there is one.
#[derive(Debug, Clone)]
pub struct Http {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Http {
    /// A client for `base` (e.g. `http://127.0.0.1:8700`).
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        // Parsed as the HTTP client will parse it: checking the text by hand
        // let `http://127.0.0.1:8700@ca.example.com` (host ca.example.com)
        // pass as loopback (security review 2026-11-24).
        let url = reqwest::Url::parse(&base)
            .map_err(|e| anyhow!("the CA URL {base:?} is not a URL ({e})"))?;
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            anyhow::bail!(
                "the CA URL {base:?} must be https://HOST[:PORT][/PATH], without user name, password, query or fragment"
            );
        }
        match url.scheme() {
            "https" => {}
            "http" => {
                // Passwords and tokens never cross a network in clear text.
                let host = url.host_str().unwrap_or_default();
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    anyhow::bail!(
                        "the CA URL {base:?} must use https:// (plain http:// only for a CA on this machine)"
                    );
                }
            }
            _ => anyhow::bail!("the CA URL {base:?} must start with https://"),
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(75))
            .user_agent(concat!("tpa-ssh/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, base, token })
    }

    /// The CA's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and decodes the JSON answer (or `()` for 204).
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            Unreachable {
                base: self.base.clone(),
                why: why.to_owned(),
            }
        })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED && self.token.is_some() {
            return Err(ApiFailure {
                code: "unauthenticated".into(),
                message: "your login expired or was revoked: run `tpa-ssh login`".into(),
            }
            .into());
        }
        if !status.is_success() {
            return Err(self.refusal(status, response).await);
        }
        if status == StatusCode::NO_CONTENT {
            return serde_json::from_str("null").context("unexpected empty answer");
        }
        let answer: Value = response
            .json()
            .await
            .context("the CA's answer is not JSON (is --ca a TPA CA?)")?;
        serde_json::from_value(printable_json(answer, false))
            .context("the CA's answer is not the expected JSON (is --ca a TPA CA?)")
    }

    /// `GET path` of a plain-text endpoint (such as `/ca.pub`).
    pub async fn text(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|_| {
                anyhow!(
                    "cannot reach the CA at {} for {path}; check --ca / $TPA_CA_URL and that the CA is running",
                    self.base
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("the CA answered HTTP {status} for {path}");
        }
        response
            .text()
            .await
            .with_context(|| format!("cannot read the CA's {path}"))
    }

    /// The error for an answer with a failure `status`: the CA's
    /// `{code, message}`, a gateway's 502/503/504 without one (the CA behind
    /// it restarting: [`Unreachable`]), or the bare status.
    async fn refusal(&self, status: StatusCode, response: reqwest::Response) -> anyhow::Error {
        let body: Option<ErrorBody> = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| serde_json::from_value(printable_json(v, false)).ok());
        if body.is_none()
            && matches!(
                status,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            )
        {
            return Unreachable {
                base: self.base.clone(),
                why: format!("HTTP {status}"),
            }
            .into();
        }
        let (code, message) = body.map_or_else(
            || {
                (
                    "http_error".to_owned(),
                    format!("the CA answered HTTP {status}"),
                )
            },
            |b| (b.code, b.message),
        );
        ApiFailure { code, message }.into()
    }
}

/// Every string of a JSON answer from the CA made safe for the terminal
/// before anything reads it: the free-text rule of `tpa_core::text`
/// (`printable`) replaces control, format and bidi characters with U+FFFD,
/// line feeds included except in the fields people write on several lines
/// (`reason`, `comment`). So no code path can print an escape sequence the
/// CA (or whoever answers in its place) sent.
fn printable_json(value: Value, multiline: bool) -> Value {
    match value {
        Value::String(s) => Value::String(printable(&s, multiline, usize::MAX)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| printable_json(v, multiline))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| {
                    let lines = matches!(k.as_str(), "reason" | "comment");
                    (printable(&k, false, usize::MAX), printable_json(v, lines))
                })
                .collect(),
        ),
        other => other,
    }
}

/// The CA could not be reached: connection refused or failed, timed out, or
/// a gateway in front of it answering 502/503/504 without a TPA error body.
#[derive(Debug, Clone)]
struct Unreachable {
    /// The CA's base URL.
    base: String,
    /// What happened, in a few words.
    why: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot reach the CA at {} ({}); check --ca / $TPA_CA_URL and that the CA is running",
            self.base, self.why
        )
    }
}

impl std::error::Error for Unreachable {}

/// Whether `error` is a passing condition of the CA (unreachable, or
/// answering `unavailable`), worth retrying, rather than an answer.
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Unreachable>().is_some()
        || error
            .downcast_ref::<ApiFailure>()
            .is_some_and(|f| f.code == "unavailable")
}

/// An error answer from the CA: `{code, message}`.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    /// Stable code.
    pub code: String,
    /// The CA's message.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreachable_and_unavailable_are_transient() {
        let unreachable = anyhow::Error::from(Unreachable {
            base: "http://127.0.0.1:1".into(),
            why: "connection failed".into(),
        });
        assert!(is_transient(&unreachable));
        assert!(unreachable.to_string().contains("cannot reach the CA"));
        let failure = |code: &str| {
            anyhow::Error::from(ApiFailure {
                code: code.into(),
                message: "m".into(),
            })
        };
        assert!(is_transient(&failure("unavailable")));
        assert!(!is_transient(&failure("not_found")));
        assert!(!is_transient(&failure("unauthenticated")));
        assert!(!is_transient(&anyhow::anyhow!("something else")));
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(Http::new("https://ca.example.com", None).is_ok());
        assert!(Http::new("http://127.0.0.1:8700", None).is_ok());
        assert!(Http::new("http://[::1]:8700/", None).is_ok());
        assert!(Http::new("http://localhost:8700", None).is_ok());
        assert!(Http::new("http://ca.example.com", None).is_err());
        assert!(Http::new("http://10.1.2.3:8700", None).is_err());
        assert!(Http::new("ftp://ca", None).is_err());
        // Security review 2026-11-24: a loopback-looking user-info part
        // must not let a token go in clear text to another host.
        for sneaky in [
            "http://127.0.0.1:8700@ca.example.com",
            "http://[::1]@ca.example.com/",
            "http://localhost:1@ca.example.com:8700/",
            "http://127.0.0.1%2F@ca.example.com",
            "https://user:pass@ca.example.com",
            "http://127.0.0.1:8700/path?x#y",
        ] {
            assert!(Http::new(sneaky, None).is_err(), "{sneaky}");
        }
        // Security review (rev-bastion): the host is the one after the `@`;
        // a text check saw "localhost" here and sent the token in clear.
        assert!(Http::new("http://localhost:8700@ca.example.com", None).is_err());
        assert!(Http::new("http://127.0.0.1:1@10.1.2.3:8700/", None).is_err());
        assert!(Http::new("https://user:pw@ca.example.com", None).is_err());
    }
}
