//! `/api/v1/login`, `/api/v1/logout` and `/api/v1/whoami`: the JSON
//! password login (an API token), its logout and who the caller is.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use tpa_core::api::{LoginRequest, LoginResponse, WhoAmI};
use tpa_core::audit::format_time;

use crate::app::AppState;
use crate::http::auth::{
    AuthVia, Authenticated, ClientIp, end_session, login_response, password_login, user_info,
};
use crate::http::csrf::Csrf;
use crate::http::error::ApiError;
use crate::http::extract::AppJson;
use crate::store::auth_tokens::TokenKind;

/// `POST /api/v1/login`: JSON `{username, password}` → an API token.
pub async fn login(
    State(state): State<AppState>,
    parts: ClientIp,
    AppJson(body): AppJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let request = body;
    let new = password_login(&state, parts.0, request, TokenKind::Api).await?;
    Ok(Json(login_response(new)))
}

/// `POST /api/v1/logout`: revokes the caller's token (or session, with the
/// CSRF token in `X-CSRF-Token`). 204.
pub async fn logout(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    Csrf(()): Csrf<()>,
) -> Result<StatusCode, ApiError> {
    end_session(&state, &auth, ip.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/whoami`: the caller and when their credential expires.
pub async fn whoami(auth: Authenticated) -> Json<WhoAmI> {
    Json(WhoAmI {
        user: user_info(&auth.user),
        via: match auth.via {
            AuthVia::Session { .. } => "session",
            AuthVia::ApiToken => "api_token",
        }
        .to_owned(),
        expires_at: format_time(auth.expires_at),
        device_login: auth.device_login,
    })
}
