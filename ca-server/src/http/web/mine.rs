//! `GET /my`: the viewer's own requests, newest first.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use minijinja::{Value, context};

use super::page_user::PageUser;
use super::{PageError, page_context, render, request_value};
use crate::app::AppState;
use crate::http::db::read;
use crate::store::requests::{Listing, list};

/// `GET /my`.
pub async fn get(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
) -> Result<Response, PageError> {
    let now = Utc::now();
    let identity = auth.user.identity.clone();
    let requests = read(&state, move |conn| {
        Ok(list(conn, Listing::Requester(&identity), 200)?)
    })
    .await?;
    let policy = &state.config.policy;
    let rows: Vec<Value> = requests
        .iter()
        .map(|r| request_value(r, policy, now))
        .collect();
    Ok(render(
        "list.html",
        context! {
            title => "My requests",
            empty => "You have not requested anything yet.",
            requests => rows,
            ..page_context(&auth)
        },
    )?)
}
