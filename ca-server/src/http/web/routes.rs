//! The pages' routes: approver and auditor pages, SSO, device and consent
//! logins (and the CLI's token endpoints that belong to those logins).

use axum::Router;
use axum::routing::{get, post};

use crate::app::AppState;
use crate::http::{api_limit, login_limit};

/// Every page route.
pub fn routes() -> Router<AppState> {
    let (login_limit, api_limit) = (login_limit(), api_limit());
    Router::new()
        .route("/", get(super::inbox::get))
        .route("/my", get(super::mine::get))
        .route("/history", get(super::history::get))
        .route("/audit", get(super::audit::log))
        .route("/audit/certificates", get(super::audit::certificates))
        .route("/audit/sessions", get(super::audit::sessions))
        .route("/audit/requests/{id}", get(super::audit::timeline))
        .route("/reviews", get(super::reviews::get))
        .route(
            "/requests/{id}/review",
            post(super::reviews::post).layer(api_limit),
        )
        .route("/requests", post(super::new_request::post).layer(api_limit))
        .route("/requests/new", get(super::new_request::get))
        .route("/requests/{id}", get(super::request::get))
        .route(
            "/requests/{id}/approve",
            post(super::request::approve).layer(api_limit),
        )
        .route(
            "/requests/{id}/deny",
            post(super::request::deny).layer(api_limit),
        )
        .route(
            "/requests/{id}/cancel",
            post(super::request::cancel).layer(api_limit),
        )
        .route(
            "/requests/{id}/revoke",
            post(super::request::revoke).layer(api_limit),
        )
        .route(
            "/login",
            get(super::login::get).merge(post(super::login::post).layer(login_limit)),
        )
        .route("/logout", post(super::login::logout).layer(login_limit))
        .route("/login/oidc/{name}", get(super::oidc::start))
        .route("/oidc/callback", get(super::oidc::callback))
        .route("/cli/login", get(super::oidc::cli_login))
        .route("/cli/consent/{id}", get(super::cli_consent::get))
        .route(
            "/cli/consent",
            post(super::cli_consent::post).layer(login_limit),
        )
        .route(
            "/api/v1/cli/token",
            post(super::oidc::cli_token).layer(login_limit),
        )
        .route(
            "/api/v1/cli/device",
            post(super::device::api_start).layer(login_limit),
        )
        .route(
            "/api/v1/cli/device/token",
            post(super::device::api_token).layer(login_limit),
        )
        .route(
            "/device",
            get(super::device::get).merge(post(super::device::post).layer(login_limit)),
        )
        .route(
            "/device/decision",
            post(super::device::decide).layer(login_limit),
        )
        .route("/static/app.css", get(super::app_css))
        .route("/static/refresh.js", get(super::refresh_js))
}
