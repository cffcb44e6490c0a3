//! The post-incident review queue of break-glass grants:
//! `GET /api/v1/reviews` and `POST /api/v1/requests/{id}/review`.

use crate::http::extract::{AppJson, AppPath};
use axum::Json;
use axum::extract::State;
use chrono::Utc;
use tpa_core::api::{RequestList, RequestView, ReviewBody};

use crate::app::AppState;
use crate::http::auth::{Authenticated, ClientIp, audit_source};
use crate::http::csrf::Csrf;
use crate::http::db::read;
use crate::http::error::ApiError;
use crate::http::extract::parse_id;

/// `GET /api/v1/reviews`: break-glass grants the caller may review.
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<RequestList>, ApiError> {
    let st = state.clone();
    let open = read(&state, move |conn| {
        crate::workflow::reviews::open_reviews(conn, &st.config.policy, &auth.user)
    })
    .await?;
    let now = Utc::now();
    Ok(Json(RequestList {
        requests: open
            .iter()
            .map(|r| RequestView::of(r, &state.config.policy, now))
            .collect(),
    }))
}

/// `POST /api/v1/requests/{id}/review` with `{comment}`.
pub async fn review(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    AppPath(id): AppPath<String>,
    Csrf(AppJson(body)): Csrf<AppJson<ReviewBody>>,
) -> Result<Json<RequestView>, ApiError> {
    let id = parse_id(&id)?;
    let r = state
        .services()
        .review(auth.user, id, body.comment, audit_source(ip.0))
        .await?;
    Ok(Json(RequestView::of(&r, &state.config.policy, Utc::now())))
}
