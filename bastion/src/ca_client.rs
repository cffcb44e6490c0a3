//! The bastion's client for the CA's bastion endpoints: the revocation feed,
//! session-record delivery and refusal reports, all with the bastion's own
//! bearer token.
//!
//! Redirects are never followed (a token must not travel to another host) and
//! every call is bounded in time.

use std::path::Path;
use std::time::Duration;

use tpa_core::api::{
    BastionEvent, BastionEventBatch, BastionEventBatchResult, ErrorBody, RevocationFeed,
    SessionBatch, SessionBatchResult, SessionRecord,
};

/// Bound on one call to the CA.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to the CA failed.
#[derive(Debug, thiserror::Error)]
pub enum CaCallError {
    /// The CA could not be reached or did not answer in time: try again later.
    #[error("CA unreachable: {0}")]
    Unreachable(String),
    /// The CA refused the bastion's token (check `ca_token_file` and `[[bastions]]`).
    #[error(
        "the CA refused the bastion token (HTTP {0}); check ca_token_file and the CA's [[bastions]]"
    )]
    Unauthorized(u16),
    /// The CA refused the content; retrying the same content will not help.
    #[error("the CA refused the call: HTTP {status}: {code}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The CA's message.
        message: String,
    },
    /// The CA failed (5xx) or answered something unexpected: try again later.
    #[error("the CA failed: {0}")]
    Failed(String),
}

impl CaCallError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        !matches!(self, CaCallError::Refused { .. })
    }
}

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum CaClientError {
    /// The token file cannot be read or is empty.
    #[error("cannot read the CA token from {path}: {message}")]
    Token {
        /// The file.
        path: String,
        /// What is wrong (never the token).
        message: String,
    },
    /// The URL is not an http(s) URL.
    #[error("ca_url {0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// A client for one CA.
#[derive(Clone)]
pub struct CaClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for CaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl CaClient {
    /// A client for the CA at `base` with the token in `token_file`.
    pub fn from_token_file(base: &str, token_file: &Path) -> Result<Self, CaClientError> {
        let token_err = |message: String| CaClientError::Token {
            path: token_file.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(token_file).map_err(|e| token_err(e.to_string()))?;
        let token = text.trim();
        if token.is_empty() || token.len() > 256 || token.chars().any(char::is_whitespace) {
            return Err(token_err(
                "the file must hold one token of 1-256 non-space characters".to_owned(),
            ));
        }
        Self::new(base, token)
    }

    /// A client for the CA at `base` with `token`.
    pub fn new(base: &str, token: &str) -> Result<Self, CaClientError> {
        let url = reqwest::Url::parse(base).map_err(|_| CaClientError::BadUrl(base.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(CaClientError::BadUrl(base.to_owned()));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| CaClientError::Http(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    /// `GET /api/v1/bastion/revocations[?since=…]`.
    pub async fn revocations(&self, since: Option<u64>) -> Result<RevocationFeed, CaCallError> {
        let url = match since {
            Some(cursor) => format!("{}/api/v1/bastion/revocations?since={cursor}", self.base),
            None => format!("{}/api/v1/bastion/revocations", self.base),
        };
        self.call(self.http.get(url), "feed").await
    }

    /// `POST /api/v1/sessions` with `records`.
    pub async fn deliver(
        &self,
        records: &[SessionRecord],
    ) -> Result<SessionBatchResult, CaCallError> {
        let body = SessionBatch {
            records: records.to_vec(),
        };
        let request = self
            .http
            .post(format!("{}/api/v1/sessions", self.base))
            .json(&body);
        self.call(request, "answer").await
    }
}

impl CaClient {
    /// Sends `request` with the bastion's token and reads its JSON answer
    /// (`what` names the answer in the error when it does not parse).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, CaCallError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CaCallError::Unreachable(without_url(&e)))?;
        let response = check(response).await?;
        response
            .json()
            .await
            .map_err(|e| CaCallError::Failed(format!("bad {what}: {}", without_url(&e))))
    }

    /// `POST /api/v1/bastion/events` with `events`.
    pub async fn deliver_events(
        &self,
        events: &[BastionEvent],
    ) -> Result<BastionEventBatchResult, CaCallError> {
        let body = BastionEventBatch {
            events: events.to_vec(),
        };
        let request = self
            .http
            .post(format!("{}/api/v1/bastion/events", self.base))
            .json(&body);
        self.call(request, "answer").await
    }
}

/// Maps a non-2xx answer to its error.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, CaCallError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let code = status.as_u16();
    if code == 401 || code == 403 {
        return Err(CaCallError::Unauthorized(code));
    }
    if status.is_server_error() || code == 408 || code == 429 {
        return Err(CaCallError::Failed(format!("HTTP {code}")));
    }
    let body: Option<ErrorBody> = response.json().await.ok();
    let (error_code, message) = body.map_or_else(
        || ("unknown".to_owned(), String::new()),
        |b| (b.code, b.message),
    );
    Err(CaCallError::Refused {
        status: code,
        code: error_code,
        message,
    })
}

/// A reqwest error without its URL (which is only the CA's base, but the
/// habit keeps query strings out of logs).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<ca>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
