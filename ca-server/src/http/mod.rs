//! The HTTP surface (axum only; no SQL here): one file per resource.

pub mod api;
pub mod auth;
pub mod csrf;
pub mod db;
pub mod error;
pub mod extract;
mod policy_gate;
pub mod web;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::app::AppState;
use api::{
    audit, bastion, ca_pub, client_config, health, krl, metrics, policy, reports, requests,
    reviews, revocations, session,
};
use error::ApiError;

/// Every route of the CA.
pub fn router(state: AppState) -> Router {
    // Body limits are axum's `DefaultBodyLimit` rather than tower-http's
    // `RequestBodyLimitLayer`: the extractors then refuse an oversized body
    // as `ApiError` (JSON 413 `payload_too_large`), not as a plain-text 413.
    // Login bodies are small; refuse big ones before parsing.
    let login_limit = DefaultBodyLimit::max(16 * 1024);
    // Requests and keys fit in 64 KiB; a larger body is refused unread (413).
    let api_limit = DefaultBodyLimit::max(64 * 1024);
    let [csp, frame, referrer] = web::PAGE_HEADERS;
    Router::new()
        .route("/ca.pub", get(ca_pub::get))
        .route("/healthz", get(health::get))
        .route("/krl", get(krl::get))
        .route("/metrics", get(metrics::get))
        .route("/api/v1/login", post(session::login).layer(login_limit))
        .route("/api/v1/logout", post(session::logout))
        .route("/api/v1/whoami", get(session::whoami))
        .route("/api/v1/client-config", get(client_config::get))
        .route("/api/v1/bastion/revocations", get(bastion::revocations))
        .route(
            "/api/v1/sessions",
            // A full batch of records is well under 256 KiB.
            post(bastion::sessions)
                .layer(DefaultBodyLimit::max(256 * 1024))
                .get(audit::sessions),
        )
        .route("/api/v1/audit", get(audit::log))
        .route("/api/v1/certificates", get(audit::certificates))
        .route("/api/v1/requests/{id}/timeline", get(audit::timeline))
        .route(
            "/api/v1/bastion/events",
            post(bastion::events).layer(DefaultBodyLimit::max(256 * 1024)),
        )
        .route(
            "/api/v1/requests",
            post(requests::create)
                .get(requests::list_requests)
                .layer(api_limit),
        )
        .route("/api/v1/requests/{id}", get(requests::get))
        .route(
            "/api/v1/requests/{id}/approve",
            post(requests::approve).layer(api_limit),
        )
        .route(
            "/api/v1/requests/{id}/deny",
            post(requests::deny).layer(api_limit),
        )
        .route("/api/v1/requests/{id}/cancel", post(requests::cancel))
        .route("/api/v1/requests/{id}/wait", get(requests::wait))
        .route(
            "/api/v1/requests/{id}/review",
            post(reviews::review).layer(api_limit),
        )
        .route("/api/v1/reviews", get(reviews::list))
        .route("/api/v1/reports/access", get(reports::access))
        .route("/api/v1/policy/explain", get(policy::explain))
        .route(
            "/api/v1/revocations",
            post(revocations::create).layer(api_limit),
        )
        .route(
            "/api/v1/requests/{id}/revoke",
            post(requests::revoke).layer(api_limit),
        )
        .route(
            "/api/v1/requests/{id}/certificate",
            post(requests::certificate).layer(api_limit),
        )
        .route("/", get(web::inbox::get))
        .route("/my", get(web::mine::get))
        .route("/history", get(web::history::get))
        .route("/audit", get(web::audit::log))
        .route("/audit/certificates", get(web::audit::certificates))
        .route("/audit/sessions", get(web::audit::sessions))
        .route("/audit/requests/{id}", get(web::audit::timeline))
        .route("/reviews", get(web::reviews::get))
        .route(
            "/requests/{id}/review",
            post(web::reviews::post).layer(api_limit),
        )
        .route("/requests", post(web::new_request::post).layer(api_limit))
        .route("/requests/new", get(web::new_request::get))
        .route("/requests/{id}", get(web::request::get))
        .route(
            "/requests/{id}/approve",
            post(web::request::approve).layer(api_limit),
        )
        .route(
            "/requests/{id}/deny",
            post(web::request::deny).layer(api_limit),
        )
        .route(
            "/requests/{id}/cancel",
            post(web::request::cancel).layer(api_limit),
        )
        .route(
            "/requests/{id}/revoke",
            post(web::request::revoke).layer(api_limit),
        )
        .route(
            "/login",
            get(web::login::get).merge(post(web::login::post).layer(login_limit)),
        )
        .route("/logout", post(web::login::logout).layer(login_limit))
        .route("/login/oidc/{name}", get(web::oidc::start))
        .route("/oidc/callback", get(web::oidc::callback))
        .route("/cli/login", get(web::oidc::cli_login))
        .route("/cli/consent/{id}", get(web::cli_consent::get))
        .route(
            "/cli/consent",
            post(web::cli_consent::post).layer(login_limit),
        )
        .route(
            "/api/v1/cli/token",
            post(web::oidc::cli_token).layer(login_limit),
        )
        .route(
            "/api/v1/cli/device",
            post(web::device::api_start).layer(login_limit),
        )
        .route(
            "/api/v1/cli/device/token",
            post(web::device::api_token).layer(login_limit),
        )
        .route(
            "/device",
            get(web::device::get).merge(post(web::device::post).layer(login_limit)),
        )
        .route(
            "/device/decision",
            post(web::device::decide).layer(login_limit),
        )
        .route("/static/app.css", get(web::app_css))
        .route("/static/refresh.js", get(web::refresh_js))
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
