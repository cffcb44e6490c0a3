//! `GET /history`: every request the viewer may see (their own and those of
//! the roles they approve), newest first.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use minijinja::{Value, context};

use super::page_user::PageUser;
use super::{PageError, page_context, render, request_value};
use crate::app::AppState;
use crate::http::db::read;
use crate::store::requests::{Listing, list};
use crate::workflow::requests as wf;

/// `GET /history`.
pub async fn get(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
) -> Result<Response, PageError> {
    let now = Utc::now();
    let st = state.clone();
    let user = auth.user.clone();
    let requests = read(&state, move |conn| {
        Ok(list(conn, Listing::All, 500)?
            .into_iter()
            .filter(|r| wf::can_view(&st.config.policy, &user, r).is_some())
            .take(200)
            .collect::<Vec<_>>())
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
            title => "History",
            empty => "No requests you may see.",
            requests => rows,
            ..page_context(&auth)
        },
    )?)
}
