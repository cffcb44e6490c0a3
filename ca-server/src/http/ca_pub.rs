//! `GET /ca.pub`: the trusted user-CA public keys, one per line, for `TrustedUserCAKeys`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::startup::AppState;

/// Serves the signing key and the extra trusted keys in authorized_keys format.
pub async fn get(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.signer.trusted_user_ca_keys(),
    )
}
