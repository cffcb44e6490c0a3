//! The HTTP surface (axum only; no SQL here): one file per resource.

mod ca_pub;
pub mod error;
mod health;

use axum::Router;
use axum::routing::get;

use crate::startup::AppState;
use error::ApiError;

/// Every route of the CA.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ca.pub", get(ca_pub::get))
        .route("/healthz", get(health::get))
        .fallback(|| async { ApiError::NotFound })
        // Without this, axum answers 405 with an empty body instead of JSON.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(tower::util::MapResponseLayer::new(security_headers))
        .with_state(state)
}

/// Headers every response carries.
fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
