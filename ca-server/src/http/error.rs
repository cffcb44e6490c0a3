//! `ApiError`: every HTTP error, answered as JSON `{code, message}` with a stable code.
//!
//! Internal errors are logged with their full chain and answered with a generic
//! message; their text never reaches the client.

use axum::Json;
use axum::extract::rejection::{BytesRejection, FormRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tpa_core::api::ErrorBody;

use crate::auth::rate_limit::Limited;
use crate::listener::BodyTimedOut;
use crate::refusal::Refusal;
use crate::store::MaybeFault as _;

/// `Retry-After` of a plain [`ApiError::Unavailable`], in seconds.
const UNAVAILABLE_RETRY_SECS: u64 = 5;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub enum ApiError {
    /// No such route or object.
    NotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// A dependency (database, CA key) is unusable.
    Unavailable,
    /// No valid session or API token (missing, unknown, expired or revoked).
    Unauthenticated,
    /// Login refused: unknown username or wrong password (indistinguishable).
    InvalidCredentials,
    /// An LDAP directory the answer depends on cannot be asked (down,
    /// timeout, TLS refused): fail closed, 503 with Retry-After.
    DirectoryUnavailable(String),
    /// A session-authenticated change without the session's CSRF token.
    CsrfMismatch,
    /// A form post from another site (`Sec-Fetch-Site` or `Origin`).
    CrossSite,
    /// Too many failed logins; retry after this many seconds.
    RateLimited {
        /// Seconds until the next attempt may succeed.
        retry_after_secs: u64,
    },
    /// Too many decisions (approve, deny, cancel) by this user in a minute.
    TooManyDecisions {
        /// Seconds until the next decision may be made.
        retry_after_secs: u64,
    },
    /// The body is not the JSON (or form) this endpoint takes; the message
    /// describes the client's own input, never the server's state.
    InvalidBody(String),
    /// A path parameter cannot be decoded (not UTF-8, wrong type).
    InvalidPath(String),
    /// The query string does not fit the endpoint's parameters.
    InvalidQuery(String),
    /// The body did not arrive within `server.body_read_timeout`.
    BodyTimeout,
    /// The body is not `application/json` (or a form) where one is required.
    UnsupportedMediaType,
    /// The body is larger than this endpoint accepts.
    PayloadTooLarge,
    /// A workflow rule refused the action; the code is stable and the message
    /// explains the rule (it never holds internal detail).
    Refused {
        /// Which rule; its stable code is e.g. `own_request`.
        code: Refusal,
        /// What was wrong and what to do.
        message: String,
    },
    /// A failure; the cause is logged, not sent. A store fault in its chain
    /// (disk full, locked, …) is answered 503 `unavailable` with
    /// `Retry-After`; anything else is a bug, answered 500 `internal`.
    Internal(anyhow::Error),
}

/// The HTTP status of a refusal: the JSON API and the web pages answer a
/// refusal with the same status. One arm per refusal, no default, so a new
/// refusal must be given its status here (issue 14).
impl Refusal {
    /// The status this refusal is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::OwnRequest
            | Refusal::NotApprover
            | Refusal::NotRequester
            | Refusal::NotYours
            | Refusal::RoleNotAllowed
            | Refusal::NotAuditor
            | Refusal::MetricsForbidden
            | Refusal::NotAdmin
            | Refusal::AccountDisabled
            | Refusal::PasswordExpired
            | Refusal::DirectoryEntryUnusable
            | Refusal::PolicyHookDenied => StatusCode::FORBIDDEN,
            Refusal::NotPending
            | Refusal::AlreadyApproved
            | Refusal::NotApproved
            | Refusal::NotActive
            | Refusal::WindowNotStarted
            | Refusal::WindowEnded
            | Refusal::PolicyNotSatisfied
            | Refusal::ContentChanged
            | Refusal::NeedsReapproval
            | Refusal::RoleChanged
            | Refusal::SigningKey
            | Refusal::SigningKeyRevoked
            | Refusal::NotBreakGlass
            | Refusal::AlreadyReviewed => StatusCode::CONFLICT,
            Refusal::InvalidGrant
            | Refusal::AuthorizationPending
            | Refusal::SlowDown
            | Refusal::AccessDenied
            | Refusal::ExpiredToken => StatusCode::BAD_REQUEST,
            Refusal::TooManyLogins
            | Refusal::DirectoryUnavailable
            | Refusal::TicketSystemUnavailable
            | Refusal::PolicyHookUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::UnknownRole
            | Refusal::DurationTooLong
            | Refusal::BadDuration
            | Refusal::BadHost
            | Refusal::HostNotInRole
            | Refusal::HostInSeveralGroups
            | Refusal::ReasonRequired
            | Refusal::BadReason
            | Refusal::TicketRequired
            | Refusal::TicketMismatch
            | Refusal::BadTicket
            | Refusal::BadComment
            | Refusal::BadStart
            | Refusal::NoBreakGlass
            | Refusal::TicketRefused
            | Refusal::Widening
            | Refusal::BadPublicKey
            | Refusal::BadScope
            | Refusal::BadTarget
            | Refusal::BadKind
            | Refusal::BadSerial
            | Refusal::BadRequestId
            | Refusal::BadUsername
            | Refusal::BadFingerprint
            | Refusal::ConfirmRequired
            | Refusal::BadPeriod
            | Refusal::BadFilter
            | Refusal::InvalidSessionRecord
            | Refusal::InvalidBastionEvent
            | Refusal::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// What a client is told about an [`ApiError`]: everything but the format
/// (JSON for the API, an HTML page for browsers).
#[derive(Debug)]
pub struct ErrorReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// For people; never internal detail.
    pub message: String,
    /// `Retry-After` seconds, for rate limits and faults.
    pub retry_after: Option<u64>,
    /// Whether to send `WWW-Authenticate: Bearer`.
    pub www_authenticate: bool,
}

impl ErrorReply {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ErrorReply {
            status,
            code,
            message: message.into(),
            retry_after: None,
            www_authenticate: false,
        }
    }

    /// The same reply, telling the client when to try again.
    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// A refusal's reply. One answered 503 is a condition of the world (a
    /// directory, ticket system or hook that is down): retry later.
    fn refused(code: Refusal, message: String) -> Self {
        let status = code.status();
        let reply = ErrorReply::new(status, code.code(), message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            reply.retry_after(UNAVAILABLE_RETRY_SECS)
        } else {
            reply
        }
    }

    /// The one place where a condition of the world (disk full, locked,
    /// read-only, unreachable) is told apart from a bug.
    fn internal(err: anyhow::Error) -> Self {
        match err.fault() {
            Some(fault) => {
                tracing::warn!(
                    cause = fault.name(),
                    error = format!("{err:#}"),
                    "answered 503: {fault}"
                );
                ErrorReply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{fault}; try again in a few seconds (see /healthz)"),
                )
                .retry_after(fault.retry_after_secs())
            }
            None => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                ErrorReply::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the CA logged the details",
                )
            }
        }
    }
}

impl ApiError {
    /// The status, code and message of this error. Internal errors are logged
    /// here with their chain and described generically.
    pub fn reply(self) -> ErrorReply {
        use StatusCode as S;
        match self {
            ApiError::NotFound => ErrorReply::new(S::NOT_FOUND, "not_found", "no such resource"),
            ApiError::MethodNotAllowed => ErrorReply::new(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this resource does not support that HTTP method; see the Allow header",
            ),
            ApiError::Unavailable => ErrorReply::new(
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "the CA cannot serve this right now; see /healthz",
            )
            .retry_after(UNAVAILABLE_RETRY_SECS),
            ApiError::Unauthenticated => ErrorReply {
                www_authenticate: true,
                ..ErrorReply::new(
                    S::UNAUTHORIZED,
                    "unauthenticated",
                    "log in first: `tpa-ssh login`, POST /api/v1/login, or the web page /login; \
                     your session or token is missing, expired or revoked",
                )
            },
            ApiError::InvalidCredentials => ErrorReply::new(
                S::UNAUTHORIZED,
                "invalid_credentials",
                "unknown username or wrong password",
            ),
            ApiError::DirectoryUnavailable(detail) => ErrorReply::new(
                S::SERVICE_UNAVAILABLE,
                "directory_unavailable",
                format!("{detail}; nothing was decided or issued, try again later (see /healthz)"),
            )
            .retry_after(UNAVAILABLE_RETRY_SECS),
            ApiError::CsrfMismatch => ErrorReply::new(
                S::FORBIDDEN,
                "csrf",
                "missing or wrong CSRF token; reload the page and try again",
            ),
            ApiError::CrossSite => ErrorReply::new(
                S::FORBIDDEN,
                "cross_site",
                "form posts from other sites are refused; use the CA's own page",
            ),
            ApiError::RateLimited { retry_after_secs } => ErrorReply::new(
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed logins; try again in {retry_after_secs} s"),
            )
            .retry_after(retry_after_secs),
            ApiError::TooManyDecisions { retry_after_secs } => ErrorReply::new(
                S::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many decisions in a minute; try again in {retry_after_secs} s"),
            )
            .retry_after(retry_after_secs),
            ApiError::InvalidBody(detail) => ErrorReply::new(
                S::BAD_REQUEST,
                "invalid_body",
                format!("the request body is not valid for this endpoint: {detail}"),
            ),
            ApiError::InvalidPath(detail) => ErrorReply::new(
                S::BAD_REQUEST,
                "invalid_path",
                format!("the URL path is not valid for this endpoint: {detail}"),
            ),
            ApiError::InvalidQuery(detail) => ErrorReply::new(
                S::BAD_REQUEST,
                "invalid_query",
                format!("the query string is not valid for this endpoint: {detail}"),
            ),
            ApiError::BodyTimeout => ErrorReply::new(
                S::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time; send it at once",
            ),
            ApiError::UnsupportedMediaType => ErrorReply::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json (or a form where the endpoint takes one)",
            ),
            ApiError::PayloadTooLarge => ErrorReply::new(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large for this endpoint",
            ),
            ApiError::Refused { code, message } => ErrorReply::refused(code, message),
            ApiError::Internal(err) => ErrorReply::internal(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ErrorReply {
            status,
            code,
            message,
            retry_after,
            www_authenticate,
        } = self.reply();
        let mut response = (
            status,
            Json(ErrorBody {
                code: code.to_owned(),
                message,
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tpa\""),
            );
        }
        response
    }
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        ApiError::RateLimited {
            retry_after_secs: limited.retry_after.as_secs().max(1),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::JsonSyntaxError(e) => ApiError::InvalidBody(e.body_text()),
            JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
            JsonRejection::BytesRejection(e) => ApiError::from(e),
            other => ApiError::InvalidBody(format!("cannot read the body ({})", other.status())),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        match rejection {
            FormRejection::InvalidFormContentType(_) => ApiError::UnsupportedMediaType,
            FormRejection::FailedToDeserializeForm(e) => ApiError::InvalidBody(e.body_text()),
            FormRejection::FailedToDeserializeFormBody(e) => ApiError::InvalidBody(e.body_text()),
            FormRejection::BytesRejection(e) => ApiError::from(e),
            other => ApiError::InvalidBody(format!("cannot read the body ({})", other.status())),
        }
    }
}

/// The one mapping of a failed body read: too large, too slow, or broken.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        while let Some(e) = source {
            if e.is::<BodyTimedOut>() {
                return ApiError::BodyTimeout;
            }
            source = e.source();
        }
        ApiError::InvalidBody("the body could not be read".to_owned())
    }
}

/// An extractor that cannot fail (`()`, inside `Csrf<()>`).
impl From<std::convert::Infallible> for ApiError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}
