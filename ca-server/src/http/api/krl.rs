//! `GET /krl`: the OpenSSH KRL of every revoked certificate that has not expired
//! yet, and of every revoked CA key, for sshd's `RevokedKeys` (see
//! docs/configuration.md, host setup).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use chrono::Utc;

use crate::app::AppState;
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::workflow::krl;

/// Serves the KRL; `X-KRL-Version` repeats its version (it grows with every revocation).
pub async fn get(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let now = Utc::now().timestamp();
    let keys = state.signer.ca_key_data();
    let krl = read(&state, move |conn| krl::build(conn, &keys, now)).await?;
    let version = HeaderValue::from(krl.version);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::HeaderName::from_static("x-krl-version"), version),
        ],
        krl.bytes,
    ))
}
