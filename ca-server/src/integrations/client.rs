//! The one HTTP client every provider uses: rustls, no redirects, a 3 s
//! deadline for the whole exchange, answers capped at 1 MiB while they are
//! read (a 10 MB answer is refused without being buffered), JSON errors
//! named, 429 with its Retry-After, and a bound on pagination.

use std::time::Duration;

use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

/// The deadline of one provider exchange (connect, send, read the answer).
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The largest answer read from a provider.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The most pages one question may take; a provider that keeps saying
/// "more" past this is answered as an error, not followed forever.
pub const MAX_PAGES: usize = 10;

/// Why a provider gave no usable answer. Never approves anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No complete answer within [`TIMEOUT`].
    #[error("did not answer within 3 s")]
    Timeout,
    /// Cannot connect (refused, DNS, TLS).
    #[error("cannot be reached")]
    Unreachable,
    /// HTTP 429: the provider limits TPA's rate.
    #[error("is limiting TPA's request rate (HTTP 429){}", retry_note(*.retry_after))]
    RateLimited {
        /// Seconds from `Retry-After`, when it said.
        retry_after: Option<u64>,
    },
    /// The object asked for does not exist (HTTP 404).
    #[error("has no such object (HTTP 404)")]
    NotFound,
    /// Credentials refused (HTTP 401/403).
    #[error("refused TPA's credentials (HTTP {0})")]
    Unauthorized(u16),
    /// Any other non-success status.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The answer is larger than [`MAX_ANSWER_BYTES`].
    #[error("sent an answer larger than 1 MiB")]
    TooLarge,
    /// The answer is not the JSON the API documents.
    #[error("sent an answer that is not the JSON expected ({0})")]
    BadJson(String),
    /// Pagination did not end within [`MAX_PAGES`].
    #[error("kept paginating past {MAX_PAGES} pages")]
    TooManyPages,
}

fn retry_note(after: Option<u64>) -> String {
    after.map_or_else(String::new, |s| format!("; retry after {s} s"))
}

impl ProviderError {
    /// Stable outcome word for the audit trail and the request page.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::Timeout => "timeout",
            ProviderError::Unreachable => "unreachable",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::NotFound => "not_found",
            ProviderError::Unauthorized(_) => "unauthorized",
            ProviderError::Status(_) => "provider_error",
            ProviderError::TooLarge => "answer_too_large",
            ProviderError::BadJson(_) => "bad_answer",
            ProviderError::TooManyPages => "too_many_pages",
        }
    }
}

/// The shared client (cheap to clone).
#[derive(Debug, Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl ProviderClient {
    /// The client with the 3 s deadline.
    pub fn new() -> Result<Self, String> {
        Self::with_timeout(TIMEOUT)
    }

    /// A client with another deadline (tests of the deadline itself).
    pub fn with_timeout(timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tpa-ca/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the provider HTTP client: {e}"))?;
        Ok(Self { http, timeout })
    }

    /// The underlying client, to build requests with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `request` and reads at most [`MAX_ANSWER_BYTES`] of a success
    /// answer; any other status becomes a [`ProviderError`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Vec<u8>, ProviderError> {
        let exchange = async {
            let mut response = request.send().await.map_err(transport)?;
            let status = response.status();
            if !status.is_success() {
                return Err(status_error(status, response.headers().get(RETRY_AFTER)));
            }
            if response
                .content_length()
                .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
            {
                return Err(ProviderError::TooLarge);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(ProviderError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        // reqwest's own timeout covers the exchange too; this one also
        // bounds a body that trickles in just under it.
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(ProviderError::Timeout))
    }

    /// Sends `request` and parses the answer as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, ProviderError> {
        let body = self.send(request).await?;
        parse(&body)
    }
}

/// Parses an answer; the error names where it went wrong, never its content.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::BadJson(format!(
            "{} at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "not JSON",
                serde_json::error::Category::Data => "unexpected fields",
                serde_json::error::Category::Eof => "cut short",
            },
            e.line(),
            e.column()
        ))
    })
}

fn transport(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Unreachable
    }
}

fn status_error(status: StatusCode, retry_after: Option<&HeaderValue>) -> ProviderError {
    match status.as_u16() {
        429 => ProviderError::RateLimited {
            retry_after: retry_after
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok()),
        },
        404 => ProviderError::NotFound,
        code @ (401 | 403) => ProviderError::Unauthorized(code),
        code => ProviderError::Status(code),
    }
}

/// A ticket system's credentials on `request`: HTTP basic with `username`
/// and the token, or the token as a bearer (Jira and ServiceNow take both).
pub fn ticket_auth(
    request: reqwest::RequestBuilder,
    config: &crate::config::TicketSystemConfig,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    Ok(match &config.username {
        Some(user) => request.basic_auth(user, Some(config.token.expose())),
        None => request.header(
            "authorization",
            secret_header(&format!("Bearer {}", config.token.expose()))?,
        ),
    })
}

/// An `Authorization` header value marked sensitive (never logged by the
/// HTTP stack).
pub fn secret_header(value: &str) -> Result<HeaderValue, ProviderError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| ProviderError::Unauthorized(0))?;
    header.set_sensitive(true);
    Ok(header)
}

/// `base` with `segments` appended as path segments, each percent-encoded
/// (a `/`, `?`, `#`, `..` or space inside one stays inside it).
pub fn endpoint(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        for segment in segments {
            // `.` and `..` are the only segments the URL parser would
            // normalise away; encoding their dots keeps them literal.
            if segment.bytes().all(|b| b == b'.') {
                path.push(&segment.replace('.', "%2E"));
            } else {
                path.push(segment);
            }
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_never_escape_their_place() {
        // issue 17: a ticket key with path characters never reaches the URL unescaped.
        let base = reqwest::Url::parse("https://jira.example.com/base/").unwrap();
        let check = |segment: &str, expected: &str| {
            let url = endpoint(&base, &["rest", "api", "2", "issue", segment]);
            assert_eq!(url.as_str(), expected, "{segment:?}");
            assert!(url.query().is_none() && url.fragment().is_none());
        };
        check(
            "INC-1",
            "https://jira.example.com/base/rest/api/2/issue/INC-1",
        );
        check(
            "../../admin",
            "https://jira.example.com/base/rest/api/2/issue/..%2F..%2Fadmin",
        );
        check(
            "a?b=c",
            "https://jira.example.com/base/rest/api/2/issue/a%3Fb=c",
        );
        check(
            "a#frag",
            "https://jira.example.com/base/rest/api/2/issue/a%23frag",
        );
        check(
            "a b",
            "https://jira.example.com/base/rest/api/2/issue/a%20b",
        );
        check(
            "..",
            "https://jira.example.com/base/rest/api/2/issue/%252E%252E",
        );
    }

    #[test]
    fn parse_errors_name_the_problem_not_the_content() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[allow(dead_code, reason = "only parsed")]
            a: u32,
        }
        let e = parse::<T>(b"<html>secret</html>").unwrap_err();
        assert!(
            matches!(&e, ProviderError::BadJson(m) if m.starts_with("not JSON")),
            "{e}"
        );
        assert!(!e.to_string().contains("secret"));
        let e = parse::<T>(b"{\"a\": \"x\"}").unwrap_err();
        assert!(
            matches!(&e, ProviderError::BadJson(m) if m.starts_with("unexpected fields")),
            "{e}"
        );
    }
}
