//! The JSON API under `/api/v1` (and `/healthz`, `/metrics`, `/ca.pub`,
//! `/krl`): one file per resource; handlers are extractors plus one workflow call.

pub mod audit;
pub mod bastion;
pub mod ca_pub;
pub mod client_config;
pub mod health;
pub mod krl;
pub mod metrics;
pub mod policy;
pub mod reports;
pub mod requests;
pub mod reviews;
pub mod revocations;
pub mod session;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::app::AppState;

/// The JSON API's routes (and `/ca.pub`, `/healthz`, `/krl`, `/metrics`).
pub fn routes() -> Router<AppState> {
    let (login_limit, api_limit) = (super::login_limit(), super::api_limit());
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
}
