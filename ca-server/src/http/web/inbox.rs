//! `GET /`: the approver inbox, the requests the viewer may decide now
//! (`workflow::requests::inbox`); everyone else goes to `/login`. An
//! auditor who approves no role lands on `/audit` instead (after every login
//! too, since logins continue to `/`): their inbox would always be empty.

use axum::extract::State;
use axum::response::{IntoResponse as _, Redirect, Response};
use chrono::Utc;
use minijinja::{Value, context};

use super::page_user::PageUser;
use super::{PageError, page_context, render, request_value};
use crate::app::AppState;
use crate::http::db::read;
use crate::workflow::requests as wf;

/// `GET /`.
pub async fn get(
    State(state): State<AppState>,
    PageUser(auth): PageUser,
) -> Result<Response, PageError> {
    let policy = &state.config.policy;
    let approver = policy
        .roles()
        .any(|role| role.stages.iter().any(|s| auth.user.in_group(&s.group)));
    if auth.auditor && !approver {
        return Ok(Redirect::to("/audit").into_response());
    }
    let now = Utc::now();
    let st = state.clone();
    let user = auth.user.clone();
    let requests = read(&state, move |conn| {
        wf::inbox(conn, &st.config.policy, &user, now)
    })
    .await?;
    let rows: Vec<Value> = requests
        .iter()
        .map(|r| request_value(r, policy, now))
        .collect();
    Ok(render(
        "inbox.html",
        context! { requests => rows, approver => approver, ..page_context(&auth) },
    )?)
}
