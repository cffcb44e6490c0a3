//! `GET /`: the start page for logged-in users (a placeholder until the
//! request inbox replaces it); everyone else goes to `/login`.

use axum::response::Response;
use minijinja::context;

use super::{page_context, render, to_login};
use crate::audit::format_time;
use crate::http::auth::Authenticated;
use crate::http::error::ApiError;

/// `GET /`.
pub async fn get(auth: Option<Authenticated>) -> Result<Response, ApiError> {
    let Some(auth) = auth else {
        return Ok(to_login());
    };
    render(
        "home.html",
        context! { expires_at => format_time(auth.expires_at), ..page_context(&auth) },
    )
}
