//! `GET /`: the approver inbox, the requests the viewer may decide now
//! (`workflow::requests::inbox`); everyone else goes to `/login`.

use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use minijinja::{Value, context};

use super::{PageError, page_context, render, request_value, to_login};
use crate::http::auth::Authenticated;
use crate::http::requests::run;
use crate::startup::AppState;
use crate::workflow::requests as wf;

/// `GET /`.
pub async fn get(
    State(state): State<AppState>,
    auth: Option<Authenticated>,
) -> Result<Response, PageError> {
    let Some(auth) = auth else {
        return Ok(to_login());
    };
    let now = Utc::now();
    let st = state.clone();
    let user = auth.user.clone();
    let requests = run(&state, move |conn| {
        wf::inbox(conn, &st.config.policy, &user, now)
    })
    .await?;
    let policy = &state.config.policy;
    let approver = policy
        .roles()
        .any(|role| role.stages.iter().any(|s| auth.user.in_group(&s.group)));
    let rows: Vec<Value> = requests
        .iter()
        .map(|r| request_value(r, policy, now))
        .collect();
    Ok(render(
        "inbox.html",
        context! { requests => rows, approver => approver, ..page_context(&auth) },
    )?)
}
