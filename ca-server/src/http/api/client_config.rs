//! `GET /api/v1/client-config`: the bastion and host patterns of `[client]`, for
//! `tpa-ssh config` and `tpa-ssh ssh`. Public, like `/ca.pub`: it names only
//! what every user's ssh configuration shows anyway.

use axum::Json;
use axum::extract::State;
use tpa_core::api::ClientConfig;

use crate::app::AppState;

/// Answers with the `[client]` section as announced.
pub async fn get(State(state): State<AppState>) -> Json<ClientConfig> {
    let client = &state.config.client;
    Json(ClientConfig {
        bastion: client.bastion.as_ref().map(ToString::to_string),
        host_patterns: client
            .host_patterns
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        allowed_suffixes: client
            .allowed_suffixes
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
    })
}
