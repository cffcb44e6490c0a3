//! The HTTP surface (axum only; no SQL here): one file per resource.

pub mod api;
pub mod auth;
pub mod csrf;
pub mod db;
pub mod error;
pub mod extract;
pub mod web;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::app::AppState;
use error::ApiError;

/// Login bodies are small; refuse big ones before parsing.
pub(crate) fn login_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(16 * 1024)
}

/// Requests and keys fit in 64 KiB; a larger body is refused unread (413).
pub(crate) fn api_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(64 * 1024)
}

/// Every route of the CA: the JSON API ([`api::routes`]) and the pages
/// ([`web::routes`]), under the layers every response passes through.
///
/// Body limits are axum's `DefaultBodyLimit` rather than tower-http's
/// `RequestBodyLimitLayer`: the extractors then refuse an oversized body
/// as `ApiError` (JSON 413 `payload_too_large`), not as a plain-text 413.
pub fn router(state: AppState) -> Router {
    let [csp, frame, referrer] = web::PAGE_HEADERS;
    api::routes()
        .merge(web::routes())
        .fallback(not_found)
        // Without this, axum answers 405 with an empty body instead of JSON.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Headers every response carries, then those of every HTML page
        // (`web::PAGE_HEADERS`); they replace any a handler set.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            csp.0,
            web::if_page(csp.1),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            frame.0,
            web::if_page(frame.1),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            referrer.0,
            web::if_page(referrer.1),
        ))
        .layer(
            // One span per request; requests and responses are logged at
            // DEBUG (the default filter shows none), failures at the
            // levels `ApiError` already logs them.
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_request(DefaultOnRequest::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(()),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            with_write_deadline,
        ))
        .with_state(state)
}

/// Gives every request one write deadline, counted from its arrival
/// (`database.write_deadline`): all the writes it makes share it.
async fn with_write_deadline(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let deadline = std::time::Instant::now() + state.config.write_deadline;
    crate::workflow::deadline::scope(deadline, next.run(request)).await
}

/// Unknown paths: a page in plain words for a browser (outside `/api/`, with
/// `Accept: text/html`: a person followed a link or typed the address), JSON
/// for everything else.
async fn not_found(
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let browser = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    if browser && !uri.path().starts_with("/api/") {
        web::PageError(ApiError::NotFound).into_response()
    } else {
        ApiError::NotFound.into_response()
    }
}
