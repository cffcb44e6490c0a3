//! `GET /reviews` (the break-glass review queue) and its form post
//! `POST /requests/{id}/review`, through the same workflow as the JSON API.

use crate::http::extract::AppPath;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use minijinja::{Value, context};

use super::page_user::{PageForm, PageUser};
use super::{PageError, page_context, render_status, request_value};
use crate::app::AppState;
use crate::http::auth::{Authenticated, ClientIp, audit_source};
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::http::extract::parse_id;

async fn page(
    state: &AppState,
    auth: &Authenticated,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, PageError> {
    let st = state.clone();
    let user = auth.user.clone();
    let open = read(state, move |conn| {
        crate::workflow::reviews::open_reviews(conn, &st.config.policy, &user)
    })
    .await?;
    let now = Utc::now();
    let rows: Vec<Value> = open
        .iter()
        .map(|r| request_value(r, &state.config.policy, now))
        .collect();
    Ok(render_status(
        status,
        "reviews.html",
        context! { requests => rows, error => error, ..page_context(auth) },
    )?)
}

/// `GET /reviews`.
pub async fn get(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
) -> Result<Response, PageError> {
    page(&state, &auth, StatusCode::OK, None).await
}

/// `POST /requests/{id}/review`: form `csrf_token`, `comment`.
pub async fn post(
    State(state): State<AppState>,
    ip: ClientIp,
    AppPath(id): AppPath<String>,
    PageForm { auth, fields }: PageForm,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let comment = fields.text("comment");
    let result = state
        .services()
        .review(auth.user.clone(), id, comment, audit_source(ip.0))
        .await
        .map_err(ApiError::from);
    match result {
        Ok(_) => Ok(Redirect::to("/reviews").into_response()),
        Err(ApiError::Refused { code, message }) => {
            page(&state, &auth, code.status(), Some(&message)).await
        }
        Err(other) => Err(other.into()),
    }
}
