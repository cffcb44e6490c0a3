//! The post-incident review queue of break-glass grants:
//! `GET /api/v1/reviews` and `POST /api/v1/requests/{id}/review`.

use super::extract::{AppJson, AppPath};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use tpa_core::api::{RequestList, RequestView, ReviewBody};

use super::auth::{Authenticated, ConnectInfoOpt};
use super::error::ApiError;
use super::requests::{csrf, parse_id, review_request, run};
use crate::request_view::view;
use crate::startup::AppState;
use crate::workflow::requests as wf;

/// `GET /api/v1/reviews`: break-glass grants the caller may review.
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<RequestList>, ApiError> {
    let st = state.clone();
    let open = run(&state, move |conn| {
        wf::open_reviews(conn, &st.config.policy, &auth.user)
    })
    .await?;
    let now = Utc::now();
    Ok(Json(RequestList {
        requests: open
            .iter()
            .map(|r| view(r, &state.config.policy, now))
            .collect(),
    }))
}

/// `POST /api/v1/requests/{id}/review` with `{comment}`.
pub async fn review(
    State(state): State<AppState>,
    ip: ConnectInfoOpt,
    auth: Authenticated,
    headers: HeaderMap,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<ReviewBody>,
) -> Result<Json<RequestView>, ApiError> {
    csrf(&auth, &headers)?;
    let id = parse_id(&id)?;
    let r = review_request(&state, ip.0, auth.user, id, body.comment).await?;
    Ok(Json(view(&r, &state.config.policy, Utc::now())))
}
