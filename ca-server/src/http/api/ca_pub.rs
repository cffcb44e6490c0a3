//! `GET /ca.pub`: the trusted user-CA public keys, one per line, for
//! `TrustedUserCAKeys`. A revoked CA key is left out (the KRL revokes it too).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::store;

/// Serves the signing key and the extra trusted keys in authorized_keys
/// format. If the revoked keys cannot be read, nothing is served (a host must
/// not be told to trust a key that may be revoked).
pub async fn get(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let revoked = read(&state, |conn| {
        Ok(store::revocations::revoked_ca_keys(conn)?)
    })
    .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.signer.trusted_user_ca_keys_except(&revoked),
    ))
}
