//! `ApiError`: every HTTP error, answered as JSON `{code, message}` with a stable code.
//!
//! Internal errors are logged with their full chain and answered with a generic
//! message; their text never reaches the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tpa_core::api::ErrorBody;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub enum ApiError {
    /// No such route or object.
    NotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// A dependency (database, CA key) is unusable.
    Unavailable,
    /// A bug or an unexpected failure; the cause is logged, not sent.
    Internal(anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such resource"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this resource does not support that HTTP method; see the Allow header",
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the CA cannot serve this right now; see /healthz",
            ),
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the CA logged the details",
                )
            }
        };
        (
            status,
            Json(ErrorBody {
                code: code.to_owned(),
                message: message.to_owned(),
            }),
        )
            .into_response()
    }
}
